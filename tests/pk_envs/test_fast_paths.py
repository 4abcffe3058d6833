"""The fast paths the environments run give the reference paths' numbers.

Bit equality where the fast path only reorganises work (cached interpolation weights, both PD
models in one RK4 loop, in-place RK4 stages, vectorised parameter checks, row-wise products);
a stated tolerance where it changes the arithmetic (the decoder step: precomputed per-patient
projections sum in another order; float32 network arithmetic, the precision the PK-VAE was
trained in). Exact vector == SyncVectorEnv batching is tested in the environment test files.
"""

from __future__ import annotations

from dataclasses import fields

import gymnasium as gym
import numpy as np
import pytest

import pk_envs
import pk_envs._common as common
from vae_simulator.decoder_kernels import PARALLEL_ROWS, ROWS_PER_TASK
from vae_simulator.groundtruth.pd import (
    BACKENDS,
    FribergParameters,
    TumourParameters,
    friberg,
    integrate_cycle,
    refine_grid,
    simulate_both,
    tumour,
)
from vae_simulator.groundtruth.pd._statespace import check_parameter_arrays, rk4_on_grid
from vae_simulator.simulator import DecoderStepper, PKSimulator, rowwise_matmul

gym.register_envs(pk_envs)


@pytest.fixture(scope="module")
def vancomycin() -> PKSimulator:
    return PKSimulator.from_pretrained("vancomycin")


@pytest.fixture(scope="module")
def cohort(vancomycin):
    """Patients (a batch the compiled step splits over the cores, with a partial last task) and a
    6-interval regimen with held doses."""
    rng = np.random.default_rng(0)
    patients = vancomycin.sample_patients(PARALLEL_ROWS + ROWS_PER_TASK + 37, rng)
    doses = rng.uniform(0.0, 3000.0, (len(patients), 6))
    doses[:20, :2] = 0.0  # never dosed yet: concentrations exactly 0
    doses[20:40, 3] = 0.0  # a held dose mid-course
    return patients, doses


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rowwise_matmul_rows_do_not_depend_on_the_batch(dtype):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((300, 96)).astype(dtype), rng.standard_normal((96, 288)).astype(dtype)
    full = rowwise_matmul(x, w)
    for rows in (slice(0, 1), slice(5, 7), slice(10, 13), slice(0, 64), slice(299, 300)):
        np.testing.assert_array_equal(rowwise_matmul(x[rows], w), full[rows])
    np.testing.assert_array_equal(rowwise_matmul(x[::2], w), full[::2])  # a non-contiguous batch too
    np.testing.assert_allclose(full, x.astype(float) @ w.astype(float), rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), [
    (np.float64, 1e-10, 1e-12),  # sums of the same products in another order
    (np.float32, 2e-5, 1e-5),  # float32 network: as close as the torch decoder is to the reference (test_vae)
])
def test_decoder_fast_path_equals_the_reference_simulator(vancomycin, cohort, dtype, rtol, atol):
    patients, doses = cohort
    monitor = np.array([2, 11])
    stepper = DecoderStepper(vancomycin, sigma_index=monitor, dtype=dtype)
    ref_state = vancomycin.initial_state(patients)
    state, constants = stepper.start(patients.covariates, patients.z)
    assert constants.dtype == dtype and state.dtype == np.float64
    np.testing.assert_allclose(state, ref_state, rtol=rtol, atol=atol)
    for k in range(doses.shape[1]):
        conc_ref, log_sigma_ref, ref_state = vancomycin.step(ref_state, patients, doses[:, k])
        conc, log_sigma, state = stepper.step(state, constants, doses[:, k])
        np.testing.assert_allclose(conc, conc_ref, rtol=rtol, atol=atol)
        np.testing.assert_allclose(log_sigma, log_sigma_ref[:, monitor], rtol=rtol, atol=atol)
        np.testing.assert_allclose(state, ref_state, rtol=rtol, atol=atol)
        assert np.all(conc[:20] == 0.0) if k < 2 else np.all(conc[:20] > 0.0)
        np.testing.assert_array_equal(state[:, -1], ref_state[:, -1])  # the 'dosed yet' flag exactly


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_decoder_fast_path_is_bit_identical_for_a_patient_in_any_batch(vancomycin, cohort, dtype):
    patients, doses = cohort
    stepper = DecoderStepper(vancomycin, sigma_index=[2, 11], dtype=dtype)
    state, constants = stepper.start(patients.covariates, patients.z)
    # alone (the serial loop) vs in a parallel batch: inside, at and across the tasks' boundaries
    for i in (0, 25, ROWS_PER_TASK - 1, ROWS_PER_TASK, len(patients) - 1):
        one_state, one_constants = stepper.start(patients.covariates[i:i + 1], patients.z[i:i + 1])
        np.testing.assert_array_equal(one_constants[0], constants[i])
        batch_state, row_state = state, one_state
        for k in range(3):
            batch_out = stepper.step(batch_state, constants, doses[:, k])
            row_out = stepper.step(row_state, one_constants, doses[i:i + 1, k])
            for batch, row in zip(batch_out, row_out):
                np.testing.assert_array_equal(row[0], batch[i])
            batch_state, row_state = batch_out[2], row_out[2]
    # a small serial batch in another order gives the same rows as the parallel batch
    picked = np.array([len(patients) - 1, 3, ROWS_PER_TASK, 0])
    small = stepper.step(state[picked], constants[picked], doses[picked, 0])
    for batch, part in zip(stepper.step(state, constants, doses[:, 0]), small):
        np.testing.assert_array_equal(part, batch[picked])


def test_compiled_decoder_step_does_not_depend_on_the_number_of_threads(vancomycin, cohort):
    import numba

    patients, doses = cohort
    stepper = DecoderStepper(vancomycin, sigma_index=[2, 11], dtype=np.float32)
    state, constants = stepper.start(patients.covariates, patients.z)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = stepper.step(state, constants, doses[:, 0])
    finally:
        numba.set_num_threads(threads)
    for a, b in zip(one, stepper.step(state, constants, doses[:, 0])):
        np.testing.assert_array_equal(a, b)


def test_decoder_fast_path_refuses_untrained_doses_and_bad_sizes(vancomycin, cohort):
    patients, _ = cohort
    stepper = DecoderStepper(vancomycin)
    state, constants = stepper.start(patients.covariates[:2], patients.z[:2])
    with pytest.raises(ValueError, match=r"dose 5000 mg is outside the range .* \[0, 4000\] mg"):
        stepper.step(state, constants, [100.0, 5000.0])
    with pytest.raises(ValueError, match="dose nan mg"):
        stepper.step(state, constants, [100.0, np.nan])
    with pytest.raises(ValueError, match="2 states but 3 doses"):
        stepper.step(state, constants, [100.0, 200.0, 300.0])
    with pytest.raises(ValueError, match=r"constants \(n, 384\)"):
        stepper.step(state, constants[:, :10], [100.0, 200.0])
    with pytest.raises(ValueError, match=r"sigma_index must hold grid indices in \[0, 11\]"):
        DecoderStepper(vancomycin, sigma_index=[12])


def test_concentration_sampling_with_cached_weights_equals_the_formula(vancomycin):
    rng = np.random.default_rng(3)
    profile, start = rng.uniform(0, 40, (5, vancomycin.grid_h.size)), rng.uniform(0, 10, 5)
    c0, grid = vancomycin.cfg.c0_mg_l, np.concatenate([[0.0], vancomycin.grid_h])
    values = np.log(np.concatenate([start[:, None], profile], axis=1) + c0)
    for times in ([2.0, 12.0], np.linspace(0.0, 12.0, 40)):  # the few-times (gather first) and many-times paths
        j = np.clip(np.searchsorted(grid, times, side="right") - 1, 0, grid.size - 2)
        w = (np.asarray(times) - grid[j]) / (grid[j + 1] - grid[j])
        expected = np.maximum(np.exp(values[:, j] * (1 - w) + values[:, j + 1] * w) - c0, 0.0)
        np.testing.assert_array_equal(vancomycin.concentration_at(profile, start, times), expected)
    with pytest.raises(ValueError, match=r"within the interval \[0, 12\] h"):
        vancomycin.concentration_at(profile, start, [13.0])


def _pd_inputs(n: int = 4):
    rng = np.random.default_rng(5)
    times = refine_grid(np.array([0.0, 0.5, 3.0, 3.5, 24.0, 96.0, 504.0]), np.zeros((1, 7)), max_gap_h=6.0)[0]
    conc_a, conc_b = rng.uniform(0, 3, (n, times.size)), rng.uniform(0, 60, (n, times.size))
    return times, conc_a, conc_b, FribergParameters.sample(n, rng), TumourParameters.sample(n, rng)


def test_both_pd_models_in_one_loop_equal_the_separate_models_bit_for_bit():
    times, conc_a, conc_b, anc, tum = _pd_inputs()
    anc_state, tum_state = friberg.steady_state(anc), tumour.initial_state(tum)
    both = simulate_both(anc_state, tum_state, times, conc_a, conc_b, anc, tum, backend="numpy")
    np.testing.assert_array_equal(both[0], friberg.simulate(anc_state, times, conc_a, conc_b, anc))
    np.testing.assert_array_equal(both[1], tumour.simulate(tum_state, times, conc_a, conc_b, tum))
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="must be finite"):  # each model's checks still apply
            simulate_both(anc_state, tum_state, times, conc_a, np.full_like(conc_b, np.nan), anc, tum,
                          backend=backend)
    with pytest.raises(ValueError, match="backend must be one of"):
        simulate_both(anc_state, tum_state, times, conc_a, conc_b, anc, tum, backend="scipy")


def test_unchecked_cycle_equals_the_compiled_simulate_both_bit_for_bit():
    times, conc_a, conc_b, anc, tum = _pd_inputs(n=8)
    anc_state, tum_state = friberg.steady_state(anc), tumour.initial_state(tum)
    checked = simulate_both(anc_state, tum_state, times, conc_a, conc_b, anc, tum)
    raw = [np.stack([getattr(p, f.name) for f in fields(p)], axis=1) for p in (anc, tum)]
    fast = integrate_cycle(anc_state, tum_state, times, conc_a, conc_b, *raw)
    for a, b in zip(checked, fast):
        np.testing.assert_array_equal(a, b)
    bad = conc_a.copy()
    bad[0, 3] = np.nan  # what no valid input gives: refused, not propagated
    with pytest.raises(FloatingPointError, match="non-finite"):
        integrate_cycle(anc_state, tum_state, times, bad, conc_b, *raw)


def _row(params, i: int):
    """Patient ``i`` of a parameter dataclass, as a batch of one."""
    return type(params)(**{f.name: getattr(params, f.name)[i:i + 1] for f in fields(params)})


@pytest.mark.parametrize("max_step_h", [4.0, 1.5])
def test_compiled_pd_equals_the_numpy_rk4_and_is_batch_invariant(max_step_h):
    times, conc_a, conc_b, anc, tum = _pd_inputs(n=64)
    # a strongly myelosuppressed, shrinking cohort as well as the drawn one: states far from baseline
    conc_a[32:] *= 5.0
    anc_state, tum_state = friberg.steady_state(anc), tumour.initial_state(tum)
    args = (anc_state, tum_state, times, conc_a, conc_b, anc, tum, max_step_h)
    compiled, reference = simulate_both(*args), simulate_both(*args, backend="numpy")
    for c, r in zip(compiled, reference):
        assert np.all(np.isfinite(c))
        np.testing.assert_allclose(c, r, rtol=1e-9, atol=0)
    assert compiled[0][:, friberg.CIRC].min() < 0.5 * anc.circ0_e9_l.min()  # the nadir was exercised
    for i in (0, 17, 63):  # one patient alone: the same bits as in the batch
        alone = simulate_both(anc_state[i:i + 1], tum_state[i:i + 1], times, conc_a[i:i + 1], conc_b[i:i + 1],
                              _row(anc, i), _row(tum, i), max_step_h)
        np.testing.assert_array_equal(alone[0][0], compiled[0][i])
        np.testing.assert_array_equal(alone[1][0], compiled[1][i])


@pytest.mark.parametrize("n", [1, 4])
def test_in_place_rk4_equals_the_textbook_loop_bit_for_bit(n):
    times, conc_a, conc_b, anc, _ = _pd_inputs(n)
    rhs, y0, inputs = friberg.problem(friberg.steady_state(anc), conc_a, conc_b, anc)
    start = y0.copy()
    y, expected = y0.T.copy(), [y0.copy()]
    for i in range(times.size - 1):  # the RK4 of rk4_on_grid's docstring, written plainly
        t0, width = times[i], times[i + 1] - times[i]
        n_sub = max(1, int(np.ceil(width / 4.0 - 1e-9)))
        h, u0 = width / n_sub, inputs[:, :, i]
        du_dt = (inputs[:, :, i + 1] - u0) / width
        for s in range(n_sub):
            ts = t0 + s * h
            u = u0 + du_dt * (ts - t0)
            k1 = rhs(ts, y, u)
            k2 = rhs(ts + 0.5 * h, y + (0.5 * h) * k1, u + du_dt * (0.5 * h))
            k3 = rhs(ts + 0.5 * h, y + (0.5 * h) * k2, u + du_dt * (0.5 * h))
            k4 = rhs(ts + h, y + h * k3, u + du_dt * h)
            y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        expected.append(y.T.copy())
    np.testing.assert_array_equal(rk4_on_grid(rhs, y0, times, inputs, 4.0), np.stack(expected, axis=2))
    np.testing.assert_array_equal(y0, start)  # the caller's start state is left alone


def test_cached_grid_refinement_is_fresh_and_exact():
    coarse = np.array([0.0, 1.0, 13.0])
    conc = np.array([[0.0, 2.0, 8.0]])
    times, values = refine_grid(coarse, conc, max_gap_h=6.0)
    np.testing.assert_array_equal(times, [0.0, 1.0, 7.0, 13.0])
    np.testing.assert_array_equal(values, [[0.0, 2.0, 5.0, 8.0]])
    times[:] = -1.0  # the caller's copy: the cache is untouched
    np.testing.assert_array_equal(refine_grid(coarse, conc, max_gap_h=6.0)[0], [0.0, 1.0, 7.0, 13.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        refine_grid(np.array([0.0, 2.0, 1.0]), max_gap_h=6.0)


@pytest.mark.parametrize(("values", "match"), [
    ({"a": np.array([1.0, np.nan]), "b": np.ones(2)}, "parameter a of patient 1 is nan"),
    ({"a": np.ones(2), "b": np.array([0.5, -1.0])}, "parameter b of patient 1 is -1.0; allowed: finite and >= 0"),
    ({"a": np.array([0.0, 1.0]), "b": np.ones(2)}, "parameter a of patient 0 is 0.0; allowed: finite and > 0"),
    ({"a": np.ones(2), "b": np.ones(3)}, "parameter b has 3 values, expected 2"),
])
def test_vectorised_parameter_check_still_names_the_bad_value(values, match):
    assert check_parameter_arrays({"a": np.array([1e-300, 2.0]), "b": np.zeros(2)}, positive=("a",)) == 2
    with pytest.raises(ValueError, match=match):
        check_parameter_arrays(values, positive=("a",))


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float32, 2e-5), (np.float64, 1e-10)])
def test_environment_concentrations_equal_the_reference_simulator(vancomycin, monkeypatch, dtype, rtol):
    """A whole episode through gym.make: the profiles the env reports are the reference decoder's."""
    monkeypatch.setattr(common, "DECODER_DTYPE", dtype)
    env = gym.make("PKDose/Vancomycin-v0")
    _, info = env.reset(seed=4)
    patients = vancomycin.make_patients(info["covariates"][None, :], info["z"][None, :])
    state = vancomycin.initial_state(patients)
    rng = np.random.default_rng(0)
    for _ in range(6):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        conc, _, state = vancomycin.step(state, patients, [info["dose_mg"]])
        np.testing.assert_allclose(info["conc_mg_l"], conc[0], rtol=rtol, atol=1e-6)
        if terminated or truncated:
            break


def test_single_chain_kernel_equals_the_multi_chain_kernel_with_one_chain():
    """v0's neutrophil-only loop and v1's any-number-of-chains loop are the same arithmetic."""
    from vae_simulator.groundtruth.pd import integrate_chains

    rng = np.random.default_rng(4)
    n = 5
    anc = FribergParameters.sample(n, rng)
    tum = TumourParameters.sample(n, rng)
    raw = [np.stack([getattr(p, f.name) for f in fields(p)], axis=1) for p in (anc, tum)]
    times = np.arange(0.0, 505.0, 6.0)
    conc_a = np.abs(rng.normal(0.2, 0.1, (n, times.size)))
    conc_b = np.abs(rng.normal(2.0, 1.0, (n, times.size)))
    state, tumour_state = friberg.steady_state(anc), tumour.initial_state(tum)
    single = integrate_cycle(state, tumour_state, times, conc_a, conc_b, *raw)
    chains = integrate_chains(state[:, None], tumour_state, times, conc_a, conc_b, raw[0][:, None], raw[1])
    np.testing.assert_array_equal(single[0], chains[0][:, 0])
    np.testing.assert_array_equal(single[1], chains[1])
