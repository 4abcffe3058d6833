"""A clinic's own NONMEM-style table with declared covariates (vae_simulator.byod.table).

Every table is written here under tmp_path; the expected events, clocks and covariates are
worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

from vae_simulator.byod.table import (
    ClinicTable,
    CovariateEncoder,
    CovariateSpec,
    parse_covariate_specs,
    read_clinic_table,
)
from vae_simulator.nonmem_events import SS_PRIOR_DOSES, read_dosing_events

COVS = parse_covariate_specs("WT,SEX:cat")


def write(tmp_path, header: str, *lines: str, name: str = "clinic.csv"):
    path = tmp_path / name
    path.write_text("\n".join((header,) + lines) + "\n")
    return path


# ------------------------------------------------------------------ events: ADDL, SS, resets
def test_bolus_with_addl_gives_three_doses_twelve_hours_apart(tmp_path):
    path = write(tmp_path, "ID,TIME,AMT,DV,EVID,ADDL,II", "1,0,100,.,1,2,12", "1,30,.,5,0,.,.")
    table = read_clinic_table(path)
    assert isinstance(table, ClinicTable) and len(table) == 1 and table.ids == ("1",)
    ev = table.events
    np.testing.assert_array_equal(ev.times_h[0], [0, 12, 24])  # TIME 0 + k * II, k = 0..ADDL
    np.testing.assert_array_equal(ev.amounts_mg[0], [100, 100, 100])
    np.testing.assert_array_equal(ev.infusion_h[0], [0, 0, 0])
    np.testing.assert_array_equal(table.observations[0].times_h, [30])
    assert table.lloq_mg_l is None and table.covariate_specs == () and table.covariate_values == {}
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert table.index("1") == 0
    with pytest.raises(KeyError, match="'2'"):
        table.index("2")


def test_steady_state_infusion_with_interval_equal_to_its_duration(tmp_path):
    # AMT 1000 at RATE 500 mg/h lasts 2 h = II: the infusions abut. SS 1 at TIME 30 prepends
    # SS_PRIOR_DOSES doses at 30 - 10 * 2 = 10, ..., 28 h: the clock starts at TIME 10.
    path = write(tmp_path, "ID,TIME,AMT,DV,EVID,RATE,SS,II", "a,30,1000,.,1,500,1,2", "a,31,.,40,0,.,.,.")
    table = read_clinic_table(path)
    n = SS_PRIOR_DOSES + 1
    np.testing.assert_allclose(table.events.times_h[0], 2.0 * np.arange(n))
    np.testing.assert_allclose(table.events.infusion_h[0], np.full(n, 2.0))
    np.testing.assert_allclose(table.events.amounts_mg[0], np.full(n, 1000.0))
    assert table.ss_shift_h[0] == 20.0 and table.time_origin_h[0] == 10.0
    np.testing.assert_allclose(table.observations[0].times_h, [21.0])  # TIME 31 - 10
    assert table.event_rows[0] == (1,) * n


RESET = "ID,TIME,AMT,DV,EVID"


def test_reset_evid3_starts_a_second_record_on_its_own_clock(tmp_path):
    lines = ("7,0,100,.,1", "7,4,.,3,0",  # occasion 1: clock from TIME 0
             "7,100,.,.,3", "7,102,200,.,1", "7,105,.,6,0",  # reset; occasion 2 from its dose at 102
             "8,1,50,.,1", "8,2,.,1,0")
    table = read_clinic_table(write(tmp_path, RESET, *lines))
    assert table.ids == ("7", "7#2", "8") and table.subject_ids == ("7", "7", "8")
    np.testing.assert_array_equal(table.time_origin_h, [0, 102, 1])
    assert table.events.mask[1].sum() == 1 and table.events.amounts_mg[1, 0] == 200
    assert table.events.times_h[1, 0] == 0
    np.testing.assert_array_equal(table.observations[1].times_h, [3])  # 105 - 102
    assert table.observations[1].rows == (5,) and table.index("7#2") == 1


def test_reset_and_dose_evid4_starts_a_record_with_that_dose_and_may_restart_time(tmp_path):
    lines = ("8,0,100,.,1", "8,6,.,2,0",
             "8,0,300,.,4", "8,2,.,9,0")  # NONMEM allows TIME to restart at a reset
    table = read_clinic_table(write(tmp_path, RESET, *lines))
    assert table.ids == ("8", "8#2")
    np.testing.assert_array_equal(table.time_origin_h, [0, 0])
    assert table.events.amounts_mg[1, 0] == 300 and table.events.mask[1].sum() == 1
    np.testing.assert_array_equal(table.observations[1].times_h, [2])
    first = read_clinic_table(write(tmp_path, RESET, "9,5,100,.,4", "9,6,.,2,0", name="b.csv"))
    assert first.ids == ("9",) and first.time_origin_h[0] == 5  # a reset on the first row: no earlier one


@pytest.mark.parametrize(("lines", "where", "message"), [
    (("7,0,100,.,1", "7,50,.,.,3", "7,52,.,3,0"), "data row 2 (file line 3), ID 7: ",
     "occasion 2 of ID 7 (record 7#2, data rows 2-3) has no dose rows (EVID 1 or 4)"),
    (("7,0,100,.,1", "7,100,.,.,3", "7,101,.,3,0", "7,102,100,.,1"), "data row 3 (file line 4), ID 7: ",
     "observation at TIME 101 h is not after the patient's first dose (TIME 102 h)"),
    (("7,0,100,.,1", "7,10,100,.,3"), "data row 2 (file line 3), ID 7: ",
     "AMT 100 on a reset row (EVID 3)"),
    (("7,0,100,.,1", "7,10,100,.,5"), "data row 2 (file line 3), ID 7: ",
     "EVID 5 is not supported (1 = dose, 0 = observation, 2 = other, 3 = reset, 4 = reset and dose)"),
])
def test_bad_occasions_are_refused_naming_the_row(tmp_path, lines, where, message):
    with pytest.raises(ValueError) as err:
        read_clinic_table(write(tmp_path, RESET, *lines))
    assert str(err.value).startswith(where) and message in str(err.value), str(err.value)


def test_record_ids_of_later_occasions_may_not_clash_with_table_ids(tmp_path):
    lines = ("7,0,100,.,1", "7,10,100,.,4", "7#2,0,100,.,1")
    with pytest.raises(ValueError, match=r"record ID\(s\) \['7#2'\] of later occasions clash"):
        read_clinic_table(write(tmp_path, RESET, *lines))


def test_the_fixed_event_reader_still_refuses_resets(tmp_path):
    with pytest.raises(ValueError, match="EVID 3 .reset. is not supported"):
        read_dosing_events(write(tmp_path, RESET, "7,0,100,.,1", "7,5,.,.,3"))


# ------------------------------------------------------------------ covariates
COV_HEADER = "ID,TIME,AMT,DV,EVID,WT,SEX"
COV_LINES = (
    "1,0,100,.,1,70,F",  # row 1: record 1 takes WT 70 (on its dose row), SEX F
    "1,10,.,.,2,75,.",  # row 2: covariate change (EVID 2); after record 1's first dose: not used there
    "1,12,.,4,0,.,.",
    "1,20,.,.,3,.,.",  # row 4: reset
    "1,22,100,.,1,.,.",  # row 5: record 1#2: WT 75 carried forward from row 2, SEX F from row 1
    "1,24,.,5,0,.,.",
    "2,0,100,.,1,.,.",  # subject 2: nothing on or before its dose: back-filled WT 80, SEX M
    "2,2,.,3,0,80,M",
    "2,4,.,2,0,85,F",
    "3,0,100,.,1,.,.",  # subject 3: missing everywhere
    "3,2,.,3,0,.,.",
)


def test_covariates_are_carried_forward_back_filled_or_none(tmp_path):
    table = read_clinic_table(write(tmp_path, COV_HEADER, *COV_LINES), COVS)
    assert table.ids == ("1", "1#2", "2", "3")
    assert table.covariate_values == {"WT": (70.0, 75.0, 80.0, None), "SEX": ("F", "F", "M", None)}
    assert table.covariate_specs == (CovariateSpec("WT", "numeric"), CovariateSpec("SEX", "categorical"))


def test_encoder_one_hot_imputation_warnings_and_round_trip(tmp_path):
    table = read_clinic_table(write(tmp_path, COV_HEADER, *COV_LINES), COVS)
    enc = CovariateEncoder.fit(table)
    assert enc.names == ("WT", "SEX=F", "SEX=M") and enc.log_names == ("WT",)
    with pytest.warns(UserWarning) as record:
        x = enc.transform(table)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2  # one per record and column
    assert messages[0].startswith("record 3: covariate SEX is missing") and "mode 'F'" in messages[0]
    assert messages[1].startswith("record 3: covariate WT is missing") and "median 75" in messages[1]
    # WT median of (70, 75, 80) = 75; SEX mode: F (records 1, 1#2) over M (record 2)
    expected = [[70, 1, 0], [75, 1, 0], [80, 0, 1], [75, 1, 0]]
    np.testing.assert_array_equal(x, expected)
    assert x.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(enc.transform(table, warn=False), expected)
    again = CovariateEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.names == enc.names and again.log_names == enc.log_names
    np.testing.assert_array_equal(again.transform(table, warn=False), x)


def test_log_names_only_for_strictly_positive_covariates(tmp_path):
    path = write(tmp_path, "ID,TIME,AMT,DV,EVID,WT,DIALYSIS", "1,0,100,.,1,70,0", "2,0,100,.,1,60,1")
    enc = CovariateEncoder.fit(read_clinic_table(path, parse_covariate_specs("WT,DIALYSIS")))
    assert enc.names == ("WT", "DIALYSIS") and enc.log_names == ("WT",)


def test_unknown_level_and_missing_column_are_refused(tmp_path):
    enc = CovariateEncoder.fit(read_clinic_table(write(tmp_path, COV_HEADER, *COV_LINES), COVS))
    other = read_clinic_table(write(tmp_path, COV_HEADER, "5,0,100,.,1,60,X", name="b.csv"), COVS)
    with pytest.raises(ValueError, match=r"record 5: unknown covariate coding SEX = 'X'.*\['F', 'M'\]"):
        enc.transform(other)
    wt_only = read_clinic_table(write(tmp_path, "ID,TIME,AMT,DV,EVID,WT", "5,0,100,.,1,60", name="c.csv"),
                                parse_covariate_specs("WT"))
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['SEX'\] the encoder was fitted on"):
        enc.transform(wt_only)


def test_fit_refuses_a_covariate_missing_for_every_record(tmp_path):
    path = write(tmp_path, COV_HEADER, "1,0,100,.,1,.,F", "2,0,100,.,1,.,M")
    with pytest.raises(ValueError, match="covariate WT is missing for every record"):
        CovariateEncoder.fit(read_clinic_table(path, COVS))


def test_a_covariate_that_is_not_a_number_is_named_by_row_line_and_id(tmp_path):
    path = write(tmp_path, COV_HEADER, "# a comment", "1,0,100,.,1,70,F", "1,2,.,3,0,7O,F")
    with pytest.raises(ValueError, match=r"^data row 2 \(file line 4\), ID 1: WT value '7O' is not a number"):
        read_clinic_table(path, COVS)


@pytest.mark.parametrize(("d", "message"), [
    ([], "expected a dict"),
    ({"format": "x", "version": 1, "covariates": [], "log_names": []}, "format 'x'"),
    ({"format": "pkdose.byod.covariate_encoder", "version": 1, "covariates": []},
     r"missing key\(s\) \['log_names'\]"),
    ({"format": "pkdose.byod.covariate_encoder", "version": 1, "log_names": [],
      "covariates": [{"name": "SEX", "kind": "categorical", "levels": ["F", "M"], "mode": "X"}]},
     r"covariates\[0\] \(SEX\): mode 'X' is not one of the levels"),
    ({"format": "pkdose.byod.covariate_encoder", "version": 1, "log_names": [],
      "covariates": [{"name": "WT", "kind": "ordinal", "median": 1.0}]},
     r"covariates\[0\] must be a dict with a kind in"),
    ({"format": "pkdose.byod.covariate_encoder", "version": 1, "log_names": ["SEX"],
      "covariates": [{"name": "WT", "kind": "numeric", "median": 70.0}]}, "log_names must list"),
    ({"format": "pkdose.byod.covariate_encoder", "version": 1, "log_names": [],
      "covariates": [{"name": "WT", "kind": "numeric", "median": "70"}]}, "median must be a finite number"),
])
def test_from_dict_names_what_is_wrong(d, message):
    with pytest.raises(ValueError, match=message):
        CovariateEncoder.from_dict(d)


# ------------------------------------------------------------------ columns and LLOQ
def test_unknown_columns_are_refused_unless_declared_or_ignored(tmp_path):
    path = write(tmp_path, "ID,TIME,AMT,DV,EVID,WT,APGAR,AGE", "1,0,100,.,1,70,8,30", "1,2,.,3,0,.,.,.")
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['APGAR', 'AGE'\].*ignore_columns"):
        read_clinic_table(path, parse_covariate_specs("WT"))  # AGE of the fixed reader is not known here
    table = read_clinic_table(path, parse_covariate_specs("WT"), ignore_columns=["apgar", "Age"])
    assert table.covariate_values == {"WT": (70.0,)}
    assert read_clinic_table(path, parse_covariate_specs("WT"), ignore_columns="APGAR,AGE").ids == ("1",)
    with pytest.raises(ValueError, match=r"required column\(s\) \['TIME'\] cannot be ignored"):
        read_clinic_table(path, parse_covariate_specs("WT"), ignore_columns=["APGAR", "AGE", "TIME"])
    with pytest.raises(ValueError, match=r"declared covariate column\(s\) \['HT'\] are not in the header"):
        read_clinic_table(path, parse_covariate_specs("WT,HT"), ignore_columns=["APGAR", "AGE"])
    with pytest.raises(ValueError, match=r"\['WT'\] are declared as covariates and also in ignore_columns"):
        read_clinic_table(path, parse_covariate_specs("WT"), ignore_columns=["WT"])
    with pytest.raises(ValueError, match=r"covariate\(s\) \['AMT'\] are columns the reader interprets"):
        read_clinic_table(path, parse_covariate_specs("AMT"))


def test_lloq_column_censors_samples_and_must_be_constant(tmp_path):
    header = "ID,TIME,AMT,DV,EVID,BLQ,LLOQ"
    path = write(tmp_path, header, "1,0,100,.,1,.,.", "1,2,.,0.3,0,0,0.5", "1,4,.,.,0,1,0.5",
                 "1,6,.,2,0,0,0.5")
    table = read_clinic_table(path)
    obs = table.observations[0]
    assert table.lloq_mg_l == 0.5
    np.testing.assert_array_equal(obs.dv_mg_l, [0.25, 0.25, 2.0])  # DV < LLOQ and BLQ = 1: LLOQ / 2
    np.testing.assert_array_equal(obs.blq, [True, True, False])
    assert read_clinic_table(path, lloq_mg_l=0.2).observations[0].blq.tolist() == [False, True, False]
    varying = write(tmp_path, header, "1,0,100,.,1,.,.", "1,2,.,0.3,0,0,0.5", "2,0,100,.,1,.,.",
                    "2,2,.,1,0,0,0.4", name="b.csv")
    with pytest.raises(ValueError, match=r"^data row 4 \(file line 5\), ID 2: LLOQ 0.4 mg/L differs from the "
                                         r"0.5 mg/L of data row 2 .*one LLOQ per table is supported"):
        read_clinic_table(varying)
    with pytest.raises(ValueError, match="LLOQ 0 mg/L must be > 0"):
        read_clinic_table(write(tmp_path, header, "1,0,100,.,1,.,0", name="c.csv"))


def test_parse_covariate_specs():
    assert parse_covariate_specs("") == () and parse_covariate_specs([]) == ()
    assert parse_covariate_specs(" wt, APGAR ,") == (CovariateSpec("WT", "numeric"),
                                                    CovariateSpec("APGAR", "numeric"))
    assert parse_covariate_specs(["WT", "sex"], categorical=["SEX"])[1] == CovariateSpec("SEX", "categorical")
    assert parse_covariate_specs("WARD:cat,CRCL:num") == (CovariateSpec("WARD", "categorical"),
                                                          CovariateSpec("CRCL", "numeric"))
    with pytest.raises(ValueError, match=r"\['WT'\] declared more than once"):
        parse_covariate_specs("WT,wt")
    with pytest.raises(ValueError, match="unknown kind 'ordinal'"):
        parse_covariate_specs("SEX:ordinal")
    with pytest.raises(ValueError, match=r"categorical covariate\(s\) \['SEX'\] are not among"):
        parse_covariate_specs("WT", categorical=["sex"])
    with pytest.raises(ValueError, match="kind must be one of"):
        CovariateSpec("WT", "integer")
