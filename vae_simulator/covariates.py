"""Covariates of a virtual adult patient population.

Every drug model draws its patients from one adult population so that covariate
effects (weight, renal function, body-surface area, sex, age) act on realistic,
correlated values.

Sources
-------
* Height and body-mass index by sex: Fryar CD et al. "Anthropometric reference data
  for children and adults: United States, 2015-2018". Vital Health Stat 3(46), 2021
  (NHANES). Men: height 175.4 cm, BMI 29.1 kg/m2; women: 161.7 cm, 29.6 kg/m2.
  SDs (7.5 cm and 7.0 cm; BMI log-SD 0.20) are read off the reported percentiles.
* Serum creatinine: log-normal around 0.95 mg/dL (men) and 0.75 mg/dL (women), rising
  ~0.3% per year of age, log-SD 0.30 -- a hospitalised population with a renal-
  impairment tail, as in the vancomycin data of Goti et al. 2018.
* Creatinine clearance: Cockcroft DW, Gault MH. Nephron 16:31-41, 1976,
  CrCL [mL/min] = (140 - age) * WT / (72 * SCr) * (0.85 if female).
* Body-surface area: Du Bois D, Du Bois EF. Arch Intern Med 17:863, 1916,
  BSA [m2] = 0.007184 * WT^0.425 * HT^0.725.
* Age: a hospital-like adult population, normal(55, 17) y truncated to 18-90 y.

Units: AGE y, SEX 1 male / 0 female, WT kg, HT cm, BSA m2, SCR mg/dL, CRCL mL/min.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: Names and units of the covariates, in the order used by :meth:`Covariates.as_array`.
COVARIATE_UNITS: dict[str, str] = {
    "AGE": "y",
    "SEX": "1=male, 0=female",
    "WT": "kg",
    "HT": "cm",
    "BSA": "m2",
    "SCR": "mg/dL",
    "CRCL": "mL/min",
}
COVARIATE_NAMES: tuple[str, ...] = tuple(COVARIATE_UNITS)

#: Physiologically plausible adult ranges (inclusive). Values outside are refused.
PHYSIOLOGICAL_RANGES: dict[str, tuple[float, float]] = {
    "AGE": (18.0, 100.0),
    "SEX": (0.0, 1.0),
    "WT": (30.0, 250.0),
    "HT": (120.0, 230.0),
    "BSA": (0.9, 3.2),
    "SCR": (0.2, 15.0),
    "CRCL": (2.0, 400.0),
}

_LOW = np.array([PHYSIOLOGICAL_RANGES[c][0] for c in COVARIATE_NAMES])
_HIGH = np.array([PHYSIOLOGICAL_RANGES[c][1] for c in COVARIATE_NAMES])

# Sampling bounds (narrower than the validation ranges: the population is plausible, the
# validator is permissive so that real clinic data is accepted).
_AGE_MEAN_Y, _AGE_SD_Y, _AGE_BOUNDS_Y = 55.0, 17.0, (18.0, 90.0)
_HT_MEAN_CM = {1: 175.4, 0: 161.7}
_HT_SD_CM = {1: 7.5, 0: 7.0}
_BMI_MEDIAN = {1: 29.1, 0: 29.6}
_BMI_LOG_SD = 0.20
_WT_BOUNDS_KG = (40.0, 180.0)
_SCR_MEDIAN_MG_DL = {1: 0.95, 0: 0.75}
_SCR_AGE_SLOPE_PER_Y = 0.003
_SCR_LOG_SD = 0.30
_SCR_BOUNDS_MG_DL = (0.4, 6.0)
_CRCL_BOUNDS_ML_MIN = (15.0, 250.0)


def cockcroft_gault_crcl(age_y, wt_kg, scr_mg_dl, sex) -> np.ndarray:
    """Creatinine clearance (mL/min) by Cockcroft-Gault (1976) with total body weight."""
    age_y, wt_kg, scr_mg_dl, sex = (np.asarray(a, dtype=float) for a in (age_y, wt_kg, scr_mg_dl, sex))
    return _cockcroft_gault(age_y, wt_kg, scr_mg_dl, np.where(sex >= 0.5, 1.0, 0.85))


def du_bois_bsa(wt_kg, ht_cm) -> np.ndarray:
    """Body-surface area (m2) by Du Bois and Du Bois (1916)."""
    return _du_bois(np.asarray(wt_kg, dtype=float), np.asarray(ht_cm, dtype=float))


# The formulas, once, for arrays and for the scalar draw of draw_covariate_row (same operations, same bits).
def _cockcroft_gault(age_y, wt_kg, scr_mg_dl, female_factor):
    return (140.0 - age_y) * wt_kg / (72.0 * scr_mg_dl) * female_factor


def _du_bois(wt_kg, ht_cm):
    return 0.007184 * np.power(wt_kg, 0.425) * np.power(ht_cm, 0.725)


@dataclass(frozen=True)
class Covariates:
    """Covariates of ``n`` patients, one 1-D float array of length ``n`` per field.

    Build with :meth:`sample` (virtual population) or :meth:`from_measurements`
    (derives BSA and CRCL). Construction validates shapes, finiteness and the
    :data:`PHYSIOLOGICAL_RANGES`, naming the offending value.
    """

    AGE: np.ndarray
    SEX: np.ndarray
    WT: np.ndarray
    HT: np.ndarray
    BSA: np.ndarray
    SCR: np.ndarray
    CRCL: np.ndarray

    def __post_init__(self) -> None:
        values = [np.atleast_1d(np.asarray(getattr(self, name), dtype=float)) for name in COVARIATE_NAMES]
        n = values[0].shape[0] if values[0].ndim == 1 else -1
        if n >= 0 and all(v.shape == (n,) for v in values):  # all valid, in one check (else the loop names why)
            stacked = np.stack(values)
            if (np.all(stacked >= _LOW[:, None]) and np.all(stacked <= _HIGH[:, None])
                    and np.all((stacked[1] == 0.0) | (stacked[1] == 1.0))):
                for name, value in zip(COVARIATE_NAMES, values):
                    object.__setattr__(self, name, value)
                return
        n = None
        for f in fields(self):
            value = np.atleast_1d(np.asarray(getattr(self, f.name), dtype=float))
            if value.ndim != 1:
                raise ValueError(f"covariate {f.name} must be a 1-D array, got shape {value.shape}")
            if n is None:
                n = value.shape[0]
            elif value.shape[0] != n:
                raise ValueError(f"covariate {f.name} has {value.shape[0]} values, expected {n} (as AGE)")
            bad = ~np.isfinite(value)
            if bad.any():
                raise ValueError(f"covariate {f.name} has a non-finite value {float(value[bad][0])} "
                                 f"at patient {int(np.flatnonzero(bad)[0])}")
            lo, hi = PHYSIOLOGICAL_RANGES[f.name]
            out = (value < lo) | (value > hi)
            if out.any():
                i = int(np.flatnonzero(out)[0])
                raise ValueError(f"covariate {f.name}={value[i]:g} {COVARIATE_UNITS[f.name]} at patient {i} "
                                 f"is outside the physiological range [{lo:g}, {hi:g}]")
            object.__setattr__(self, f.name, value)
        if not np.all(np.isin(self.SEX, (0.0, 1.0))):
            raise ValueError(f"covariate SEX must be 0 (female) or 1 (male), got {self.SEX[~np.isin(self.SEX, (0, 1))][0]:g}")

    def __len__(self) -> int:
        return int(self.AGE.shape[0])

    @classmethod
    def from_measurements(cls, *, age_y, sex, wt_kg, ht_cm, scr_mg_dl, crcl_ml_min=None) -> Covariates:
        """Covariates from measured values; BSA (Du Bois) and CrCL (Cockcroft-Gault) derived.

        ``crcl_ml_min`` overrides the Cockcroft-Gault estimate when the clinic measured it.
        """
        age_y, sex, wt_kg, ht_cm, scr_mg_dl = (np.atleast_1d(np.asarray(a, dtype=float))
                                               for a in (age_y, sex, wt_kg, ht_cm, scr_mg_dl))
        crcl = cockcroft_gault_crcl(age_y, wt_kg, scr_mg_dl, sex) if crcl_ml_min is None else crcl_ml_min
        return cls(AGE=age_y, SEX=sex, WT=wt_kg, HT=ht_cm, BSA=du_bois_bsa(wt_kg, ht_cm),
                   SCR=scr_mg_dl, CRCL=np.atleast_1d(np.asarray(crcl, dtype=float)))

    @classmethod
    def sample(cls, n: int, rng: np.random.Generator) -> Covariates:
        """Draw ``n`` adult patients (see module docstring for the sources).

        Patients whose Cockcroft-Gault CrCL falls outside ``[15, 250]`` mL/min (the formula
        overshoots in young obese patients with low creatinine) are redrawn whole.
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"number of patients must be a positive integer, got {n!r}")
        values = _draw_patients(n, rng)
        bad = (values["crcl"] < _CRCL_BOUNDS_ML_MIN[0]) | (values["crcl"] > _CRCL_BOUNDS_ML_MIN[1])
        while bad.any():
            redraw = _draw_patients(int(bad.sum()), rng)
            for key in values:
                values[key][bad] = redraw[key]
            bad = (values["crcl"] < _CRCL_BOUNDS_ML_MIN[0]) | (values["crcl"] > _CRCL_BOUNDS_ML_MIN[1])
        return cls.from_measurements(age_y=values["age"], sex=values["sex"], wt_kg=values["wt"],
                                     ht_cm=values["ht"], scr_mg_dl=values["scr"],
                                     crcl_ml_min=values["crcl"])  # Cockcroft-Gault, computed by the draw


    def as_array(self, names: tuple[str, ...] = COVARIATE_NAMES) -> np.ndarray:
        """Stack the named covariates to an ``(n, len(names))`` float array."""
        unknown = [c for c in names if c not in COVARIATE_UNITS]
        if unknown:
            raise ValueError(f"unknown covariate(s) {unknown}; known: {list(COVARIATE_NAMES)}")
        return np.stack([getattr(self, c) for c in names], axis=1)

    @classmethod
    def from_array(cls, values: np.ndarray, names: tuple[str, ...] = COVARIATE_NAMES) -> Covariates:
        """Inverse of :meth:`as_array` (all of :data:`COVARIATE_NAMES` must be present)."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise ValueError(f"covariate array must have shape (n, {len(names)}) for {list(names)}, "
                             f"got {values.shape}")
        missing = [c for c in COVARIATE_NAMES if c not in names]
        if missing:
            raise ValueError(f"covariate array lacks {missing}")
        return cls(**{c: values[:, names.index(c)] for c in COVARIATE_NAMES})

    def subset(self, index) -> Covariates:
        """The patients selected by ``index`` (any numpy index)."""
        return Covariates(**{f.name: np.atleast_1d(getattr(self, f.name)[index]) for f in fields(self)})


def _draw_patients(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One draw of ``n`` patients' measured covariates and their CG creatinine clearance."""
    sex = (rng.random(n) < 0.5).astype(float)
    age = _truncated_normal(rng, _AGE_MEAN_Y, _AGE_SD_Y, _AGE_BOUNDS_Y, n)
    male = sex == 1.0
    ht = np.where(male, _HT_MEAN_CM[1], _HT_MEAN_CM[0]) + np.where(male, _HT_SD_CM[1], _HT_SD_CM[0]) * \
        _truncated_normal(rng, 0.0, 1.0, (-3.0, 3.0), n)
    bmi = np.where(male, _BMI_MEDIAN[1], _BMI_MEDIAN[0]) * np.exp(
        _BMI_LOG_SD * _truncated_normal(rng, 0.0, 1.0, (-2.5, 2.5), n))
    wt = np.clip(bmi * (ht / 100.0) ** 2, *_WT_BOUNDS_KG)
    scr_median = np.where(male, _SCR_MEDIAN_MG_DL[1], _SCR_MEDIAN_MG_DL[0]) * \
        np.exp(_SCR_AGE_SLOPE_PER_Y * (age - 55.0))
    scr = np.clip(scr_median * np.exp(_SCR_LOG_SD * _truncated_normal(rng, 0.0, 1.0, (-3.0, 3.0), n)),
                  *_SCR_BOUNDS_MG_DL)
    return dict(age=age, sex=sex, wt=wt, ht=ht, scr=scr, crcl=cockcroft_gault_crcl(age, wt, scr, sex))


def draw_covariate_row(rng: np.random.Generator, sex: float | None = None) -> np.ndarray:
    """One patient's covariates, ``(7,)`` in :data:`COVARIATE_NAMES` order: the same numbers, from the
    same random stream, as ``Covariates.sample(1, rng).as_array()[0]``, about 10x faster.

    The environments draw every new patient from its own sub-environment's generator, one at a time;
    there the array version's per-call overhead on 1-element arrays dominated a reset. Scalar
    arithmetic follows the array version operation by operation (numpy ufuncs for ``exp`` and the
    powers, so that the bits agree; ``tests/vae_simulator/test_foundation.py`` checks equality); the values are in
    the physiological ranges by construction (sampling bounds inside them), so no validation pass.

    ``sex`` (1 male, 0 female) fixes the sex instead of drawing it (one uniform fewer per attempt),
    e.g. for gynaecological tumours; the other covariates follow that sex's distributions.
    """
    if sex is not None and sex not in (0.0, 1.0):
        raise ValueError(f"sex must be None (drawn), 0 (female) or 1 (male), got {sex!r}")
    fixed = sex
    while True:  # a patient outside the CrCL bounds is redrawn whole, as in Covariates.sample
        sex = (1.0 if rng.random() < 0.5 else 0.0) if fixed is None else float(fixed)
        male = int(sex)
        age = _truncated_normal_scalar(rng, _AGE_MEAN_Y, _AGE_SD_Y, _AGE_BOUNDS_Y)
        ht = _HT_MEAN_CM[male] + _HT_SD_CM[male] * _truncated_normal_scalar(rng, 0.0, 1.0, (-3.0, 3.0))
        bmi = _BMI_MEDIAN[male] * np.exp(_BMI_LOG_SD * _truncated_normal_scalar(rng, 0.0, 1.0, (-2.5, 2.5)))
        metres = ht / 100.0
        wt = min(max(bmi * (metres * metres), _WT_BOUNDS_KG[0]), _WT_BOUNDS_KG[1])
        scr_median = _SCR_MEDIAN_MG_DL[male] * np.exp(_SCR_AGE_SLOPE_PER_Y * (age - 55.0))
        scr = scr_median * np.exp(_SCR_LOG_SD * _truncated_normal_scalar(rng, 0.0, 1.0, (-3.0, 3.0)))
        scr = min(max(scr, _SCR_BOUNDS_MG_DL[0]), _SCR_BOUNDS_MG_DL[1])
        crcl = _cockcroft_gault(age, wt, scr, 1.0 if male else 0.85)
        if _CRCL_BOUNDS_ML_MIN[0] <= crcl <= _CRCL_BOUNDS_ML_MIN[1]:
            return np.array([age, sex, wt, ht, _du_bois(wt, ht), scr, crcl], dtype=float)


def _truncated_normal_scalar(rng: np.random.Generator, mean: float, sd: float, bounds: tuple[float, float]) -> float:
    """One draw of :func:`_truncated_normal` (same stream)."""
    while True:
        value = rng.normal(mean, sd)
        if bounds[0] <= value <= bounds[1]:
            return value


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, bounds: tuple[float, float],
                      n: int) -> np.ndarray:
    """Normal draws redrawn until inside ``bounds`` (deterministic for a given generator)."""
    out = rng.normal(mean, sd, n)
    bad = (out < bounds[0]) | (out > bounds[1])
    while bad.any():
        out[bad] = rng.normal(mean, sd, int(bad.sum()))
        bad = (out < bounds[0]) | (out > bounds[1])
    return out
