"""NONMEM-style tables read into dosing events and samples (vae_simulator.nonmem_events).

Every table is written here under tmp_path; the expected events are computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from vae_simulator.events import EventLimits
from vae_simulator.nonmem import DosingRules, read_histories
from vae_simulator.nonmem_events import SS_PRIOR_DOSES, read_dosing_events

HEADER = "ID,TIME,AMT,DV,EVID,MDV,RATE,DUR,II,ADDL,SS,BLQ,CMT"


def write(tmp_path, *lines: str, header: str = HEADER, name: str = "table.csv"):
    path = tmp_path / name
    path.write_text("\n".join((header,) + lines) + "\n")
    return path


def row(pid="1", time="0", amt=".", dv=".", evid="1", mdv=".", rate=".", dur=".", ii=".", addl=".", ss=".",
        blq=".", cmt="1") -> str:
    return f"{pid},{time},{amt},{dv},{evid},{mdv},{rate},{dur},{ii},{addl},{ss},{blq},{cmt}"


def dose(pid="1", time="0", amt="1000", **kw) -> str:
    return row(pid, time, amt, evid="1", mdv="1", **kw)


def sample(pid="1", time="1", dv="10", **kw) -> str:
    return row(pid, time, dv=dv, evid="0", mdv="0", **kw)


# ------------------------------------------------------------------ ADDL, infusions, irregular times
def test_addl_expands_into_additional_doses_at_ii_intervals(tmp_path):
    path = write(tmp_path, dose(time="4", ii="12", addl="3"), sample(time="41.5", dv="8"))
    table = read_dosing_events(path)
    assert table.ids == ("1",) and table.time_origin_h[0] == 4.0 and table.ss_shift_h[0] == 0.0
    ev = table.events
    np.testing.assert_array_equal(ev.times_h[0], [0, 12, 24, 36])  # TIME + k * II, k = 0..ADDL, from TIME 4
    np.testing.assert_array_equal(ev.amounts_mg[0], [1000] * 4)
    assert table.event_rows[0] == (1, 1, 1, 1)  # every copy names its row
    np.testing.assert_array_equal(table.observations[0].times_h, [37.5])  # 41.5 h on the table clock


def test_addl_doses_interleave_with_later_dose_rows_in_time_order(tmp_path):
    lines = (dose(time="0", amt="500", ii="24", addl="2"), dose(time="30", amt="250"),
             sample(time="50", dv="3"))
    table = read_dosing_events(write(tmp_path, *lines))
    np.testing.assert_array_equal(table.events.times_h[0], [0, 24, 30, 48])
    np.testing.assert_array_equal(table.events.amounts_mg[0], [500, 500, 250, 500])
    assert table.event_rows[0] == (1, 1, 2, 1)


def test_infusion_duration_from_rate_or_dur(tmp_path):
    lines = (dose(time="0", amt="1000", rate="500"),  # 2 h
             dose(time="12", amt="1500", rate="-2", dur="1.5"),  # RATE -2: DUR
             dose(time="24", amt="1000", dur="1"),  # DUR alone (the fixed-schedule reader's convention)
             dose(time="36", amt="1000", rate="1000", dur="1"),  # RATE and DUR that agree
             dose(time="48", amt="1000"),  # no rate: bolus
             dose(time="60", amt="0", rate="500"),  # a held dose has no infusion
             dose(time="72", amt="750", rate="250", ii="12", addl="1"),  # ADDL copies keep the 3-h infusion
             sample(time="90", dv="5"))
    ev = read_dosing_events(write(tmp_path, *lines)).events
    np.testing.assert_array_equal(ev.times_h[0], [0, 12, 24, 36, 48, 60, 72, 84])
    np.testing.assert_allclose(ev.infusion_h[0], [2, 1.5, 1, 1, 0, 0, 3, 3])
    np.testing.assert_array_equal(ev.amounts_mg[0], [1000, 1500, 1000, 1000, 1000, 0, 750, 750])


def test_vancomycin_second_dose_8_h_after_the_first_is_accepted(tmp_path):
    """The fixed-schedule reader refuses it (4 h off q12h); the event reader keeps it as given."""
    header = "ID,TIME,AMT,DV,EVID,MDV,RATE,AGE,SEX,WT,HT,SCR"
    lines = ("7,6,1500,.,1,1,1500,60,M,80,175,1.0", "7,14,1000,.,1,1,1000,60,M,80,175,1.0",
             "7,21.5,.,18.2,0,0,.,60,M,80,175,1.0", "7,26,1000,.,1,1,1000,60,M,80,175,1.0",
             "7,37.5,.,11.0,0,0,.,60,M,80,175,1.0")
    path = write(tmp_path, *lines, header=header)
    rules = DosingRules(drug="vancomycin", interval_h=12.0, infusion_h=1.0, dose_range_mg=(0.0, 3000.0),
                        lloq_mg_l=2.0, max_doses=10)
    with pytest.raises(ValueError, match="4.00 h off the every-12-h schedule"):
        read_histories(path, rules)
    table = read_dosing_events(path, lloq_mg_l=2.0)  # covariate columns are allowed, not read
    np.testing.assert_array_equal(table.events.times_h[0], [0, 8, 20])
    np.testing.assert_array_equal(table.events.amounts_mg[0], [1500, 1000, 1000])
    np.testing.assert_array_equal(table.events.infusion_h[0], [1, 1, 1])
    obs = table.observations[0]
    np.testing.assert_array_equal(obs.times_h, [15.5, 31.5])
    np.testing.assert_array_equal(obs.dv_mg_l, [18.2, 11.0])
    assert obs.rows == (3, 5) and table.time_origin_h[0] == 6.0


def test_patients_on_their_own_clocks_are_padded_together(tmp_path):
    lines = (dose("a", "10"), sample("a", "12", "9"), dose("b", "0", ii="8", addl="4"),
             sample("b", "33", "4"))
    table = read_dosing_events(write(tmp_path, *lines))
    assert table.ids == ("a", "b") and table.index("b") == 1
    np.testing.assert_array_equal(table.events.mask, [[True, False, False, False, False], [True] * 5])
    np.testing.assert_array_equal(table.time_origin_h, [10.0, 0.0])
    table.events.check()  # what the continuous-time model is given
    with pytest.raises(KeyError, match="no patient with ID 'c'"):
        table.index("c")


def test_comments_mdv_and_other_events_are_skipped(tmp_path):
    lines = ("# a comment line", dose(time="0"), row(time="1", evid="2"), row(time="2", evid="0", mdv="1"),
             sample(time="3", dv="12"))
    table = read_dosing_events(write(tmp_path, *lines))
    assert table.observations[0].rows == (4,)  # data rows count only rows that are not comments


# ------------------------------------------------------------------ censoring
def test_blq_follows_the_fixed_schedule_readers_convention(tmp_path):
    lines = (dose(time="0"), sample(time="2", dv=".", blq="1"), sample(time="4", dv="0.3"),
             sample(time="6", dv="7"))
    obs = read_dosing_events(write(tmp_path, *lines), lloq_mg_l=0.5).observations[0]
    np.testing.assert_array_equal(obs.blq, [True, True, False])  # flagged, and below the LLOQ unflagged
    np.testing.assert_array_equal(obs.dv_mg_l, [0.25, 0.25, 7.0])  # carried as LLOQ / 2
    without = read_dosing_events(write(tmp_path, dose(time="0"), sample(time="4", dv="0.3"), name="b.csv"))
    assert not without.observations[0].blq[0] and without.observations[0].dv_mg_l[0] == 0.3
    assert without.lloq_mg_l is None


def test_blq_flag_without_an_lloq_is_refused(tmp_path):
    path = write(tmp_path, dose(time="0"), sample(time="2", dv=".", blq="1"))
    with pytest.raises(ValueError, match=r"data row 2 \(file line 3\), ID 1: BLQ = 1 but .* no LLOQ"):
        read_dosing_events(path)


# ------------------------------------------------------------------ steady state
def test_ss_dose_is_expanded_into_prior_doses_and_the_origin_shifted(tmp_path):
    lines = (sample(time="100", dv="9.5"),
             dose(time="100", amt="1000", rate="1000", ii="12", ss="1", addl="1"),
             sample(time="113", dv="20"))
    table = read_dosing_events(write(tmp_path, *lines))
    n = SS_PRIOR_DOSES
    ev = table.events
    np.testing.assert_allclose(ev.times_h[0], 12.0 * np.arange(n + 2))  # n prior, the SS dose, its ADDL dose
    np.testing.assert_array_equal(ev.amounts_mg[0], [1000] * (n + 2))
    np.testing.assert_array_equal(ev.infusion_h[0], [1] * (n + 2))
    assert table.ss_shift_h[0] == 12.0 * n and table.time_origin_h[0] == 100 - 12.0 * n
    obs = table.observations[0]
    np.testing.assert_allclose(obs.times_h, [12.0 * n, 12.0 * n + 13])  # a trough at the SS dose's time
    assert int(ev.last_before(obs.times_h[None])[0, 0]) == n - 1  # ... comes before it, after the last prior
    assert set(table.event_rows[0]) == {2}


def test_ss_prior_doses_reach_the_documented_fraction_of_steady_state(tmp_path):
    """Linear one-compartment bolus, half-life 2 x II: the trough before the SS dose is within 3.2 % of the
    analytic steady-state trough with the default number of prior doses, as the module doc says."""
    tau, dose_mg, volume_l = 12.0, 1000.0, 50.0
    k = np.log(2) / (2 * tau)
    table = read_dosing_events(write(tmp_path, dose(time="0", amt="1000", ii="12", ss="1"), sample(time="0")))
    ev, t = table.events, table.observations[0].times_h[0]
    conc = dose_mg / volume_l * np.exp(-k * (t - ev.times_h[0][ev.times_h[0] < t])).sum()
    r = np.exp(-k * tau)
    steady = dose_mg / volume_l * r / (1 - r)
    assert conc / steady == pytest.approx(1 - 2.0 ** -5) and conc / steady > 1 - 0.032


def test_ss_infusion_with_ii_equal_to_duration_is_back_to_back_infusions(tmp_path):
    lines = (dose(time="0", amt="2400", rate="100", ii="24", ss="1"), sample(time="6", dv="15"))
    ev = read_dosing_events(write(tmp_path, *lines), ss_doses=3).events
    np.testing.assert_array_equal(ev.times_h[0], [0, 24, 48, 72])
    np.testing.assert_array_equal(ev.infusion_h[0], [24, 24, 24, 24])


@pytest.mark.parametrize(("lines", "kwargs", "where", "message"), [
    ((dose(time="0", ii="12", ss="1"),), {"ss_doses": 0}, "data row 1 (file line 2), ID 1", "ss_doses=0"),
    ((dose(time="0"), dose(time="12", ii="12", ss="1")), {}, "data row 2 (file line 3), ID 1",
     "SS 1 after earlier dose rows"),
    ((dose(time="0", ss="1"),), {}, "data row 1 (file line 2), ID 1",
     "SS 1 needs the dosing interval II > 0 h, got II missing"),
    ((dose(time="0", amt="0", rate="50", ii="0", ss="1"),), {}, "data row 1 (file line 2), ID 1", "II 0"),
    ((dose(time="0", amt="0", ii="12", ss="1"),), {}, "data row 1 (file line 2), ID 1", "SS 1 with AMT 0"),
    ((dose(time="0", ii="12", ss="2"),), {}, "data row 1 (file line 2), ID 1", "SS 2 is not supported"),
    ((sample(time="5"), dose(time="10", ii="12", ss="1")), {}, "data row 1 (file line 2), ID 1",
     "not after the patient's first dose (TIME 10 h) (a steady-state dose resets"),
])
def test_ss_rows_that_cannot_be_expanded_are_refused(tmp_path, lines, kwargs, where, message):
    with pytest.raises(ValueError) as err:
        read_dosing_events(write(tmp_path, *lines), **kwargs)
    assert str(err.value).startswith(where + ": ") and message in str(err.value)


# ------------------------------------------------------------------ malformed rows
P = "p3"
MALFORMED = [  # (case, rows, data row named, message); the table starts with a comment line
    ("negative II", (dose(P, ii="-12", addl="2"),), 1, "II -12 h is negative"),
    ("ADDL without II", (dose(P, addl="3"),), 1,
     "ADDL 3 needs the interval II > 0 h between the doses, got II missing"),
    ("ADDL with II 0", (dose(P, addl="3", ii="0"),), 1, "got II 0"),
    ("non-integer ADDL", (dose(P, ii="12", addl="2.5"),), 1, "ADDL 2.5 must be a whole number"),
    ("negative ADDL", (dose(P, ii="12", addl="-1"),), 1, "ADDL -1 must be a whole number"),
    ("out of time order", (dose(P, "10"), sample(P, "9")), 2, "TIME 9 h is before the previous row's 10 h"),
    ("negative TIME", (dose(P, "-1"),), 1, "TIME -1 h is negative"),
    ("negative AMT", (dose(P, amt="-500"),), 1, "AMT -500 mg is negative"),
    ("missing AMT", (dose(P, amt="."),), 1, "AMT is missing"),
    ("AMT not a number", (dose(P, amt="1g"),), 1, "AMT value '1g' is not a number"),
    ("modelled rate", (dose(P, rate="-1"),), 1, "RATE -1 is not supported"),
    ("RATE -2 without DUR", (dose(P, rate="-2"),), 1,
     "RATE -2 takes the infusion duration from DUR, but DUR is missing"),
    ("negative DUR", (dose(P, dur="-1"),), 1, "DUR -1 h is negative"),
    ("RATE and DUR disagree", (dose(P, amt="1000", rate="500", dur="1"),), 1,
     "RATE 500 mg/h gives a 2-h infusion of AMT 1000 mg, but DUR is 1 h"),
    ("reset event", (dose(P), row(P, "5", evid="3")), 2, "EVID 3 (reset) is not supported"),
    ("unknown EVID", (dose(P), row(P, "5", evid="7")), 2, "EVID 7 is not supported"),
    ("ADDL on an observation", (dose(P), sample(P, "2", ii="12", addl="2")), 2,
     "ADDL = 2 on a row that is not a dose"),
    ("pre-dose sample", (sample(P, "0"), dose(P, "0")), 1,
     "observation at TIME 0 h is not after the patient's first dose (TIME 0 h)"),
    ("negative DV", (dose(P), sample(P, "2", dv="-3")), 2, "DV -3 mg/L is negative"),
    ("missing DV", (dose(P), sample(P, "2", dv=".")), 2, "DV is missing"),
    ("no doses", (sample(P, "2"),), 1, "patient p3 has no dose rows"),
    ("interleaved IDs", (dose(P), dose("q"), sample(P, "2")), 3, "rows of ID p3 are interleaved"),
]


@pytest.mark.parametrize(("lines", "data_row", "message"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_rows_are_named_by_data_row_file_line_and_id(tmp_path, lines, data_row, message):
    path = write(tmp_path, "# a comment: file lines and data rows differ", *lines)
    with pytest.raises(ValueError) as err:
        read_dosing_events(path)
    where = f"data row {data_row} (file line {data_row + 2}), ID p3: "
    assert str(err.value).startswith(where), str(err.value)
    assert message in str(err.value), str(err.value)


def test_columns_and_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['WEIGHT'\]"):
        read_dosing_events(write(tmp_path, "1,0,1000,.,1,80", header="ID,TIME,AMT,DV,EVID,WEIGHT"))
    needs = r"missing required column\(s\): EVID. The PK-VAE needs every dose and sample$"
    with pytest.raises(ValueError, match=needs):
        read_dosing_events(write(tmp_path, "1,0,1000,.", header="ID,TIME,AMT,DV", name="b.csv"))
    path = write(tmp_path, dose(), sample(), name="c.csv")
    with pytest.raises(ValueError, match="lloq_mg_l must be a finite LLOQ > 0 mg/L, got -1"):
        read_dosing_events(path, lloq_mg_l=-1.0)
    with pytest.raises(ValueError, match="ss_doses must be a whole number >= 0"):
        read_dosing_events(path, ss_doses=2.5)


# ------------------------------------------------------------------ trained limits
LIMITS = EventLimits(dose_max_mg=2000.0, infusion_range_h=(0.5, 2.0), horizon_h=96.0, max_gap_h=48.0)


def test_events_and_samples_outside_the_trained_limits_are_refused_with_their_rows(tmp_path):
    path = write(tmp_path, dose(amt="1000", rate="1000", ii="12", addl="2"), sample(time="30"))
    ok = read_dosing_events(path, limits=LIMITS)
    assert ok.events.max_events == 3
    lines = (dose(pid="9", amt="1000", rate="1000"), dose(pid="9", time="12", amt="2500", rate="2500"))
    with pytest.raises(ValueError, match=r"^ID 9 \(data rows 1-2\): event 1: amount 2500 mg is outside .* "
                                         r"\[event 1 from data row 2 \(file line 3\)\]"):
        read_dosing_events(write(tmp_path, *lines, name="b.csv"), limits=LIMITS)
    lines = (dose(pid="9", amt="1000", rate="1000", ii="12", ss="1"), sample(pid="9", time="2"))
    horizon = (r"^data row 2 \(file line 3\), ID 9: sample time 122 h is 122 h after the first dose, "
               r"beyond the model's trained horizon of 96 h")
    with pytest.raises(ValueError, match=horizon):
        read_dosing_events(write(tmp_path, *lines, name="c.csv"), limits=LIMITS)
    lines = (dose(pid="9", amt="1000", rate="1000"), sample(pid="9", time="60"))
    gap = r"^data row 2 \(file line 3\), ID 9: sample time 60 h is 60 h after the last dose, beyond"
    with pytest.raises(ValueError, match=gap):
        read_dosing_events(write(tmp_path, *lines, name="d.csv"), limits=LIMITS)
