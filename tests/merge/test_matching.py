"""Weight matching: planted symmetries of trained networks are undone exactly, the aligned network
computes its source's function, the objective is the brute-force optimum on small layers, and the
batched code agrees with the one-pair reference."""
import itertools

import pytest
import torch

from gmnae.merge.assignment import available_solvers, choose_solver, hungarian_torch, solve_assignments
from gmnae.merge.matching import match_weights, unit_normalisation
from gmnae.merge.reference_matching import reference_element, weight_matching_reference
from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture, apply_element, forward, invert, random_element


def _inputs(arch):
    if arch.family == "siren":
        return coordinate_grid(28, dtype=torch.float64)
    return digits.classification_images("test")[0][:64].double()


RECOVERY = [("trained_sirens", "P", "wm"), ("trained_sirens", "PD", "wm-signed"), ("trained_sirens", "D", "wm-signed"),
            ("trained_tanh_cnns", "P", "wm"), ("trained_tanh_cnns", "PD", "wm-signed"),
            ("trained_relu_cnns", "P", "wm"), ("trained_relu_cnns", "PS", "wm-scale"),
            ("trained_relu_cnns", "S", "wm-scale"),
            ("trained_leaky_cnns", "PS", "wm-scale")]


@pytest.mark.parametrize("fixture,kinds,method", RECOVERY)
def test_planted_symmetry_is_recovered_exactly(request, fixture, kinds, method):
    arch, params = request.getfixturevalue(fixture)
    g = random_element(arch, len(params), kinds, torch.Generator().manual_seed(3), dtype=torch.float64)
    moved = apply_element(arch, params, g)
    res = match_weights(arch, params, moved, method, seed=1)
    torch.testing.assert_close(res.aligned, params, rtol=0, atol=1e-10)
    truth = invert(g)
    for p, p_true, q, q_true in zip(res.element.perms, truth.perms, res.element.scales, truth.scales):
        assert torch.equal(p, p_true)
        torch.testing.assert_close(q, q_true, rtol=1e-10, atol=0)


@pytest.mark.parametrize("fixture,methods", [("trained_sirens", ("wm", "wm-signed")),
                                             ("trained_tanh_cnns", ("wm", "wm-signed")),
                                             ("trained_relu_cnns", ("wm", "wm-scale")),
                                             ("trained_leaky_cnns", ("wm", "wm-scale"))])
def test_aligned_network_computes_the_same_function(request, fixture, methods):
    arch, params = request.getfixturevalue(fixture)
    a, b = params[0::2], params[1::2]  # independently trained networks
    x = _inputs(arch)
    for method in methods:
        res = match_weights(arch, a, b, method)
        assert (res.aligned - b).abs().max() > 1e-2  # it really moved
        torch.testing.assert_close(forward(arch, res.aligned, x), forward(arch, b, x), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(apply_element(arch, b, res.element), res.aligned)
        # matching never lowers the objective of the identity
        assert torch.all(res.objective >= (a * b).sum(-1) - 1e-9) or method == "wm-scale"


def test_batched_agrees_with_one_pair_reference(trained_sirens, trained_tanh_cnns):
    for arch, params in (trained_sirens, trained_tanh_cnns):
        a, b = params[0::2].float(), params[1::2].float()
        res = match_weights(arch, a, b, "wm", seed=5, solver="scipy")
        for k in range(len(a)):
            ref = reference_element(arch, weight_matching_reference(arch, a[k], b[k], seed=5))
            for p, p_ref in zip(res.element.perms, ref.perms):
                assert torch.equal(p[k], p_ref[0])


def test_single_pair_and_seed_reproducibility(trained_sirens):
    arch, params = trained_sirens
    r1 = match_weights(arch, params[0], params[1], "wm-signed", seed=7)
    r2 = match_weights(arch, params[0:1], params[1:2], "wm-signed", seed=7)
    assert r1.aligned.shape == params[0].shape
    torch.testing.assert_close(r1.aligned, r2.aligned[0])


def _random_net(arch, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, arch.n_params, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("arch", [Architecture.siren((2, 6, 1)), Architecture.siren((3, 5, 2)),
                                  Architecture.small_cnn("tanh", channels=(1, 5), n_classes=3)])
def test_objective_is_brute_force_optimum_for_one_hidden_layer(arch):
    a, b = _random_net(arch, 8, 0), _random_net(arch, 8, 1)
    h = arch.hidden_sizes[0]
    perms = torch.tensor(list(itertools.permutations(range(h))))  # [h!, h]
    signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=h)), dtype=torch.float64)  # [2^h, h]
    for k in range(len(a)):
        def objective(perm, sign):
            from gmnae.weightspace import GroupElement
            g = GroupElement([perm], [sign])
            return (a[k] * apply_element(arch, b[k].expand(len(perm), -1), g)).sum(-1)

        best_p = objective(perms, torch.ones(len(perms), h, dtype=torch.float64)).max()
        best_signed = max(objective(perms, s.expand(len(perms), h)).max() for s in signs)
        for solver in available_solvers():
            res = match_weights(arch, a[k:k + 1], b[k:k + 1], "wm", solver=solver)
            torch.testing.assert_close(res.objective[0], best_p, rtol=1e-12, atol=1e-12)
        res = match_weights(arch, a[k:k + 1], b[k:k + 1], "wm-signed", activation="tanh")
        torch.testing.assert_close(res.objective[0], best_signed, rtol=1e-12, atol=1e-12)


def test_solvers_agree_on_random_problems():
    cost = torch.randn(40, 9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = solve_assignments(cost, "scipy")
    best = torch.gather(cost, 2, ref.unsqueeze(2)).sum((1, 2))
    for solver in available_solvers():
        cols = solve_assignments(cost, solver)
        assert torch.equal(cols.sort(1).values, torch.arange(9).expand(40, 9))  # permutations
        torch.testing.assert_close(torch.gather(cost, 2, cols.unsqueeze(2)).sum((1, 2)), best)
    assert torch.equal(hungarian_torch(cost), ref)
    assert choose_solver(9) in available_solvers()


def _tied_problems(n: int, batch: int, seed: int) -> torch.Tensor:
    """Costs with many optimal assignments: small integers, constant matrices, repeated rows and columns."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 3, (batch, n, n), generator=g).double()
    const = torch.full((4, n, n), 0.25, dtype=torch.float64)
    rows = torch.randn(batch, 1, n, generator=g, dtype=torch.float64).expand(batch, n, n).clone()
    cols = torch.randn(batch, n, 1, generator=g, dtype=torch.float64).expand(batch, n, n).clone()
    blocks = torch.randn(batch, n // 4, n // 4, generator=g, dtype=torch.float64).repeat_interleave(4, 1).repeat_interleave(4, 2)
    return torch.cat([small, const, rows, cols, blocks])


@pytest.mark.parametrize("kind", ["random", "tied", "scaled"])
def test_every_solver_is_exact_against_scipy_on_32x32_problems(kind):
    """The size weight matching meets (32 hidden units): every solver, including the row-reduced lapx path,
    returns a permutation whose total equals scipy's optimum, also where many assignments tie."""
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(3)
    if kind == "random":
        cost = torch.randn(64, 32, 32, generator=g, dtype=torch.float64)
    elif kind == "tied":
        cost = _tied_problems(32, 16, 4)
    else:  # wide dynamic range per row, as in weight-matching costs of layers with dead and live units
        cost = torch.randn(64, 32, 32, generator=g, dtype=torch.float64) * torch.logspace(-6, 3, 32, dtype=torch.float64)[:, None]
    best = torch.tensor([cost[k].numpy()[linear_sum_assignment(cost[k].numpy(), maximize=True)].sum()
                         for k in range(len(cost))], dtype=torch.float64)
    for solver in available_solvers():
        cols = solve_assignments(cost, solver)
        assert torch.equal(cols.sort(1).values, torch.arange(32).expand(len(cost), 32)), solver
        total = torch.gather(cost, 2, cols.unsqueeze(2)).sum((1, 2))
        torch.testing.assert_close(total, best, rtol=1e-12, atol=1e-12 * float(cost.abs().max()), msg=solver)


def test_unit_normalisation(trained_relu_cnns):
    arch, params = trained_relu_cnns
    normed = apply_element(arch, params, unit_normalisation(arch, params))
    from gmnae.weightspace import unflatten
    for (w, b), _ in zip(unflatten(arch, normed)[:-1], arch.hidden_sizes):
        norm = torch.sqrt(w.flatten(2).pow(2).sum(-1) + b.pow(2))
        torch.testing.assert_close(norm, torch.ones_like(norm))
    x = _inputs(arch)
    torch.testing.assert_close(forward(arch, normed, x), forward(arch, params, x), rtol=1e-9, atol=1e-9)


def test_method_must_be_a_symmetry_of_the_activation(trained_relu_cnns, trained_sirens):
    arch, params = trained_relu_cnns
    with pytest.raises(ValueError, match="wm-signed"):
        match_weights(arch, params[:2], params[2:4], "wm-signed")
    s_arch, s_params = trained_sirens
    with pytest.raises(ValueError, match="wm-scale"):
        match_weights(s_arch, s_params[:2], s_params[2:4], "wm-scale")
    with pytest.raises(ValueError, match="activation="):
        match_weights(arch.with_activation("mixed"), params[:2], params[2:4], "wm-scale")
    with pytest.raises(ValueError, match="unknown merge method"):
        match_weights(arch, params[:2], params[2:4], "wm-magic")


def test_max_iter_and_naive(trained_sirens):
    arch, params = trained_sirens
    res = match_weights(arch, params[0::2], params[1::2], "wm", max_iter=1)
    assert torch.all(res.sweeps == 1)
    naive = match_weights(arch, params[0::2], params[1::2], "naive")
    assert torch.equal(naive.aligned, params[1::2])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_matching_on_gpu_equals_cpu(trained_sirens):
    arch, params = trained_sirens
    a, b = params[0::2], params[1::2]
    cpu = match_weights(arch, a, b, "wm-signed")
    for solver in ("auto", "torch"):
        gpu = match_weights(arch, a.cuda(), b.cuda(), "wm-signed", solver=solver)
        assert gpu.aligned.is_cuda
        torch.testing.assert_close(gpu.aligned.cpu(), cpu.aligned)


def test_certificate_accepts_optimal_and_rejects_improvable_assignments():
    from gmnae.merge.assignment import certify_optimal

    cost = torch.randn(64, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    best = solve_assignments(cost, "scipy")
    assert torch.all(certify_optimal(cost, best, max_rounds=13))
    worse = best.clone()
    worse[:, [0, 1]] = worse[:, [1, 0]]  # a swap of an optimum is never better; mostly strictly worse
    value = lambda cols: torch.gather(cost, 2, cols.unsqueeze(2)).sum((1, 2))
    strictly = value(worse) < value(best) - 1e-9
    assert not torch.any(certify_optimal(cost, worse, max_rounds=13)[strictly])


@pytest.mark.parametrize("fixture,method", [("trained_tanh_cnns", "wm-signed"), ("trained_relu_cnns", "wm-scale")])
def test_result_does_not_depend_on_batch_composition(fixture, method, request):
    arch, params = request.getfixturevalue(fixture)
    a, b = params[0::2], params[1::2]
    whole = match_weights(arch, a, b, method, seed=2)
    chunked = match_weights(arch, a, b, method, seed=2, chunk=2)  # chunks: b moved once, after all chunks
    torch.testing.assert_close(chunked.aligned, whole.aligned, rtol=0, atol=0)
    torch.testing.assert_close(chunked.objective, whole.objective, rtol=0, atol=0)
    torch.testing.assert_close(chunked.aligned, apply_element(arch, b, chunked.element), rtol=0, atol=0)
    for p, q in zip(chunked.element.perms, whole.element.perms):
        assert torch.equal(p, q)
    torch.testing.assert_close(match_weights(arch, a[3], b[3], method, seed=2).aligned, whole.aligned[3])


def test_worker_threads_give_the_same_result(trained_sirens):
    arch, params = trained_sirens
    a, b = params[0::2], params[1::2]
    one = match_weights(arch, a, b, "wm", chunk=3)
    two = match_weights(arch, a, b, "wm", chunk=3, workers=2)
    torch.testing.assert_close(two.aligned, one.aligned, rtol=0, atol=0)


@pytest.mark.parametrize("fixture", ["trained_sirens", "trained_tanh_cnns"])
def test_flat_gather_move_is_the_row_gather_action_bitwise(request, fixture):
    """`apply_element`'s one-gather path (factors ±1; the matcher's final move) gives exactly the general
    per-axis action, also in float32 and written into a slice of a larger output; on dense networks
    `apply_element` takes it, on conv kernels the per-axis path."""
    from gmnae.weightspace.permutation_spec import permutation_spec
    from gmnae.weightspace.symmetry import _apply_by_axes, _apply_by_flat_gather

    arch, params = request.getfixturevalue(fixture)
    spec = permutation_spec(arch)
    for dtype in (torch.float64, torch.float32):
        x = params.to(dtype)
        for symmetries in ("P", "PD"):
            g = random_element(arch, len(x), symmetries, torch.Generator().manual_seed(5), dtype=dtype)
            expected = _apply_by_axes(spec, x, g)
            assert not torch.equal(expected, x)
            assert torch.equal(_apply_by_flat_gather(spec, x, g, None), expected)
            assert torch.equal(apply_element(arch, x, g), expected)
            out = torch.full((len(x) + 2, x.shape[1]), float("nan"), dtype=dtype)
            apply_element(arch, x, g, out=out[1:-1])
            assert torch.equal(out[1:-1], expected) and out[[0, -1]].isnan().all()


@pytest.mark.parametrize("kind", ["random", "tied", "scaled"])
def test_lapx_on_float32_costs_with_given_row_maxima_equals_the_float64_solve(kind):
    """The matcher hands the lapx solvers float32 costs and the row maxima it has already computed; the
    solver input (`rowmax - C` in float64) and so every assignment must be exactly those of the float64 path."""
    pytest.importorskip("lap")
    g = torch.Generator().manual_seed(7)
    if kind == "random":
        cost = torch.randn(64, 32, 32, generator=g)
    elif kind == "tied":
        cost = _tied_problems(32, 16, 8).float()
    else:
        cost = torch.randn(64, 32, 32, generator=g) * torch.logspace(-6, 3, 32)[:, None]
    best = solve_assignments(cost.double(), "scipy")
    value = lambda cols: torch.gather(cost.double(), 2, cols.unsqueeze(2)).sum((1, 2))
    for solver in [s for s in available_solvers() if s.startswith("lapjv")]:
        fast = solve_assignments(cost, solver, 1, row_max=cost.amax(dim=2))
        assert torch.equal(fast, solve_assignments(cost.double(), solver, 1)), solver
        torch.testing.assert_close(value(fast), value(best), rtol=1e-12, atol=1e-12 * float(cost.abs().max()))


def test_every_solver_gives_the_scipy_matching_on_trained_networks(trained_sirens):
    """The matcher's bookkeeping (only solved pairs updated, skipped solves, the lapx fast path, the jv solver's
    warm starts from the previous sweep's duals) changes nothing: each solver yields scipy's permutations, signs
    and objective on independently trained SIRENs."""
    from gmnae.merge import lap_dual

    arch, params = trained_sirens
    a, b = params[0::2].float(), params[1::2].float()
    assert ("jv" in available_solvers()) == (lap_dual.library() is not None)
    runs = [(s, {}) for s in available_solvers()] + [("jv", {"warm_start": False})] * ("jv" in available_solvers())
    for method in ("wm", "wm-signed"):
        ref = match_weights(arch, a, b, method, seed=4, solver="scipy", chunk=3)
        for solver, kw in runs:
            res = match_weights(arch, a, b, method, seed=4, solver=solver, chunk=3, **kw)
            for p, q in zip(res.element.perms + res.element.scales, ref.element.perms + ref.element.scales):
                assert torch.equal(p, q), (method, solver, kw)
            assert torch.equal(res.aligned, ref.aligned) and torch.equal(res.sweeps, ref.sweeps)


@pytest.mark.parametrize("fixture,method", [("trained_tanh_cnns", "wm-signed"), ("trained_relu_cnns", "wm-scale"),
                                            ("trained_sirens", "wm")])
def test_jv_warm_starts_change_no_result(fixture, method, request, monkeypatch):
    """The jv solver warm-started from each layer's last duals (the default) gives bitwise the matching of cold jv
    solves and of scipy, on several sweeps of re-solves (seeds, float64 and float32 networks)."""
    import gmnae.merge.matching as matching

    if "jv" not in available_solvers():
        pytest.skip("no C compiler: the jv solver is not built")
    arch, params = request.getfixturevalue(fixture)
    warm = []  # how many pairs each solve warm-started (init_v given)
    solve = matching.solve_assignments_with_duals
    spy = lambda cost, threads, init_cols=None, init_v=None: (  # noqa: E731
        warm.append(0 if init_v is None else len(cost)) or solve(cost, threads, init_cols, init_v))
    monkeypatch.setattr(matching, "solve_assignments_with_duals", spy)
    for dtype in (torch.float64, torch.float32):
        a, b = params[0::2].to(dtype), params[1::2].to(dtype)
        for seed in (0, 1):
            ref = match_weights(arch, a, b, method, seed=seed, solver="scipy")
            for kw in ({"warm_start": True}, {"warm_start": False}):
                warm.clear()
                res = match_weights(arch, a, b, method, seed=seed, solver="jv", **kw)
                assert (sum(warm) > 0) == kw["warm_start"], kw  # re-solves were warm-started (only) where asked
                for p, q in zip(res.element.perms + res.element.scales, ref.element.perms + ref.element.scales):
                    assert torch.equal(p, q), (dtype, seed, kw)
                assert torch.equal(res.aligned, ref.aligned) and torch.equal(res.sweeps, ref.sweeps)
                assert torch.equal(res.objective, ref.objective) and res.solver == "jv"


@pytest.mark.parametrize("method", ["wm", "wm-signed", "wm-scale", "naive"])
def test_empty_batch_gives_an_empty_result(method):
    arch = Architecture.small_cnn("tanh" if method == "wm-signed" else "relu")
    a = torch.zeros(0, arch.n_params)
    res = match_weights(arch, a, a.clone(), method)
    assert res.aligned.shape == (0, arch.n_params) and res.objective.shape == (0,) and res.sweeps.shape == (0,)
    assert all(p.shape[0] == 0 for p in res.element.perms + res.element.scales)


def test_auto_solver_is_the_fastest_measured_and_is_kept_on_disk(monkeypatch, tmp_path):
    """`choose_solver` takes the fastest of `time_solvers`' measurements (hard matching-like problems) and
    keeps it per process and on disk: a later process with the same versions, machine and threads reuses it."""
    import gmnae.merge.assignment as asg

    monkeypatch.setenv(asg.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(asg.NO_CACHE_ENV, raising=False)
    monkeypatch.setattr(asg, "_CHOSEN", {})
    fake = {s: 1.0 + k for k, s in enumerate(reversed(available_solvers()))}  # the last listed is fastest
    calls = []
    monkeypatch.setattr(asg, "time_solvers", lambda *a, **k: calls.append(a) or fake)
    fastest = available_solvers()[-1]
    assert choose_solver(32, threads=1) == fastest and len(calls) == 1
    assert choose_solver(32, threads=1) == fastest and len(calls) == 1  # per process
    monkeypatch.setattr(asg, "_CHOSEN", {})  # a new process: read from disk, nothing measured
    assert choose_solver(32, threads=1) == fastest and len(calls) == 1
    assert choose_solver(16, threads=1) == fastest and len(calls) == 2  # another shape is measured
    monkeypatch.setattr(asg, "_CHOSEN", {})
    monkeypatch.setenv(asg.NO_CACHE_ENV, "off")
    assert choose_solver(32, threads=1) == fastest and len(calls) == 3


def test_solver_timing_measures_every_available_solver():
    from gmnae.merge.assignment import _benchmark_problems, time_solvers

    timings = time_solvers(8, threads=1, rounds=1, batch=16)
    assert set(timings) == set(available_solvers()) - {"torch"} and all(0 < t < 1 for t in timings.values())
    assert _benchmark_problems(8, batch=4).shape == (4, 8, 8)
