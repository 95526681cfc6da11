"""The native assignment solver with dual potentials (gmnae/merge/lap_dual.c): optimal values against scipy on
random, tied, rank-deficient and all-equal problems, the dual certificate, warm starts, empty batches, and the
GMNAE_NATIVE=0 fallback (no `jv` solver, nothing else changes)."""
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from gmnae.merge import lap_dual
from gmnae.merge.assignment import (_solver_fn, available_solvers, solve_assignments,
                                    solve_assignments_with_duals)

needs_lib = pytest.mark.skipif(lap_dual.library() is None, reason="no C compiler: the jv solver is not built")
SIZES = [1, 2, 3, 5, 32]
KINDS = ["random", "tied", "rank", "equal"]


def _problems(kind: str, n: int, batch: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + n)
    if kind == "random":
        return rng.standard_normal((batch, n, n))
    if kind == "tied":  # costs in {0, 1, 2}: many optimal assignments
        return rng.integers(0, 3, (batch, n, n)).astype(np.float64)
    if kind == "rank":  # rank 2 (rank 1 for n = 1), and repeated columns
        c = np.einsum("bik,bjk->bij", rng.standard_normal((batch, n, 2)), rng.standard_normal((batch, n, 2)))
        c[:, :, n // 2:] = c[:, :, :1]
        return c
    return np.full((batch, n, n), 0.375)


def _optimum(cost: np.ndarray) -> np.ndarray:
    return np.array([c[linear_sum_assignment(c, maximize=True)].sum() for c in cost])


def _check_certificate(cost: np.ndarray, cols: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
    """cols are permutations of optimal value, u + v >= C everywhere, = C on the assignment, sum(u + v) = optimum."""
    B, n = cols.shape
    scale = 1e-12 * (1 + np.abs(cost).max()) * n
    assert (np.sort(cols, 1) == np.arange(n)).all()
    value = np.take_along_axis(cost, cols[:, :, None], 2).sum((1, 2))
    best = _optimum(cost)
    np.testing.assert_allclose(value, best, rtol=0, atol=scale)
    slack = u[:, :, None] + v[:, None, :] - cost
    assert slack.min() >= -scale, slack.min()
    np.testing.assert_allclose(np.take_along_axis(slack, cols[:, :, None], 2), 0.0, atol=scale)
    np.testing.assert_allclose(u.sum(1) + v.sum(1), best, rtol=0, atol=scale)


@needs_lib
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", SIZES)
def test_optimal_value_and_dual_certificate(n, kind, dtype):
    cost = _problems(kind, n).astype(dtype)
    cols, u, v = lap_dual.solve(cost)
    assert cols.dtype == np.int64 and u.dtype == v.dtype == np.float64 and cols.shape == u.shape == v.shape == (12, n)
    _check_certificate(cost.astype(np.float64), cols, u, v)  # float32 costs are widened exactly


@needs_lib
@pytest.mark.parametrize("n", SIZES)
def test_warm_start_from_the_optimum_needs_no_augmentation(n):
    """Integer costs (exact arithmetic): the cold solve's assignment and duals are tight, so a warm start from them
    keeps every pair; the cold solve itself needed augmenting paths (the counter counts)."""
    rng = np.random.default_rng(n)
    cost = np.concatenate([rng.integers(-500, 500, (8, n, n)), rng.integers(0, 3, (8, n, n))]).astype(np.float64)
    cold = np.zeros(len(cost), np.int64)
    cols, u, v = lap_dual.solve(cost, augmentations=cold)
    warm = np.full(len(cost), -1, np.int64)
    cols2, u2, v2 = lap_dual.solve(cost, init_cols=cols, init_v=v, augmentations=warm)
    assert (warm == 0).all()
    assert np.array_equal(cols2, cols) and np.array_equal(v2, v) and np.array_equal(u2, u)
    if n >= 5:
        assert cold.sum() > 0


@needs_lib
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [2, 5, 32])
def test_warm_start_from_stale_or_arbitrary_duals_is_still_optimal(n, kind):
    rng = np.random.default_rng(7)
    cost = _problems(kind, n, seed=3)
    old = cost + 0.05 * rng.standard_normal(cost.shape)  # the matrix the duals were computed for
    cols0, _, v0 = lap_dual.solve(old)
    augs = np.zeros(len(cost), np.int64)
    _check_certificate(cost, *lap_dual.solve(cost, init_cols=cols0, init_v=v0, augmentations=augs))
    assert (augs <= n).all()
    # v alone, an assignment alone, random potentials with a random (or invalid, repeated) assignment
    _check_certificate(cost, *lap_dual.solve(cost, init_v=v0))
    _check_certificate(cost, *lap_dual.solve(cost, init_cols=cols0))
    junk = np.stack([rng.permutation(n) for _ in cost])
    junk[:, 0] = junk[:, -1]
    _check_certificate(cost, *lap_dual.solve(cost, init_cols=junk, init_v=100 * rng.standard_normal((len(cost), n))))


@needs_lib
def test_empty_batch_threads_and_torch_entry_point():
    cols, u, v = lap_dual.solve(np.zeros((0, 4, 4)))
    assert cols.shape == u.shape == v.shape == (0, 4)
    cols, u, v = solve_assignments_with_duals(torch.zeros(0, 3, 3))
    assert cols.shape == (0, 3) and cols.dtype == torch.long and u.dtype == torch.float64
    assert solve_assignments(torch.zeros(0, 3, 3), "jv").shape == (0, 3)
    cost = _problems("random", 32, batch=40, seed=1)
    one = lap_dual.solve(cost, threads=1)
    for got, want in zip(lap_dual.solve(cost, threads=3), one):  # a result never depends on the thread count
        assert np.array_equal(got, want)
    t = torch.from_numpy(cost).float()
    cols, u, v = solve_assignments_with_duals(t, 2, init_cols=torch.from_numpy(one[0]), init_v=torch.from_numpy(one[2]))
    assert cols.dtype == torch.long and u.dtype == v.dtype == torch.float64
    _check_certificate(t.double().numpy(), cols.numpy(), u.numpy(), v.numpy())
    with pytest.raises(ValueError):
        lap_dual.solve(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError):
        lap_dual.solve(np.zeros((2, 3, 4)))


@needs_lib
def test_jv_is_a_timed_candidate_of_the_automatic_choice():
    from gmnae.merge.assignment import time_solvers

    assert "jv" in available_solvers()
    assert "jv" in time_solvers(8, threads=1, rounds=1, batch=8)
    cost = torch.from_numpy(_problems("tied", 5, seed=2))
    np.testing.assert_array_equal(_solver_fn("jv", 1)(cost.numpy()), solve_assignments(cost, "jv").numpy())


def test_without_native_code_jv_is_simply_absent(monkeypatch):
    monkeypatch.setenv("GMNAE_NATIVE", "0")
    assert lap_dual.library() is None and "jv" not in available_solvers()
    assert "scipy" in available_solvers() and lap_dual.version() == "none"
    cost = torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(solve_assignments(cost, "scipy").sort(1).values, torch.arange(4).expand(3, 4))
    with pytest.raises(ValueError, match="jv"):
        _solver_fn("jv")
    with pytest.raises(RuntimeError):
        solve_assignments_with_duals(cost)
