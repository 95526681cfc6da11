"""The compiled per-edge step (gated_edge_compiled: Inductor's pointwise chains around torch's matmuls, d > 64):
its hand-written backwards against autograd, exact invariance on trained networks through it, agreement with
the torch gate in float32 and under bf16 autocast, and the fallback when Inductor cannot build."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gmnae.nn import gated_edge_compiled as compiled
from gmnae.nn.gated_edge import gated_edge
from gmnae.weightspace import random_transform
from tests.nn.test_scalegmn import (CASES, _case, _one_thread, encoder, gate_inputs, mixed_cnns,  # noqa: F401
                                   mixed_transform, rel)  # _one_thread (autouse), mixed_cnns: fixtures

D = 72  # past the native kernels' MAX_D (64): `edge_kernel="auto"` takes the compiled path


@pytest.fixture
def eager(monkeypatch):
    """The chains' Python functions without Inductor: the math and the hand-written backwards, in float64."""
    monkeypatch.setattr(compiled._Compiled, "__call__", lambda self, *args: self.fn(*args))


@pytest.mark.parametrize("reduce", [None, 1, 2])
@pytest.mark.parametrize("s", [None, -1.0, 1.0, "tensor"])
@pytest.mark.parametrize("bias,extra,times_z", [(False, False, True), (True, True, False)])
def test_gate_backward_matches_autograd(eager, s, bias, extra, times_z, reduce):
    a, c, lin, b, h_add, sq_add, s, n = gate_inputs(s, bias, extra)
    fn = lambda a, c, W, wb, b, h_add, sq_add: compiled.gated_edge(a, c, W, wb, h_add, sq_add, b, s, n, 1e-12,
                                                                   times_z, reduce)
    ins = (a, c, lin.weight, lin.bias, b, h_add, sq_add)
    assert torch.autograd.gradcheck(fn, ins)
    y = fn(*ins)
    assert type(y.grad_fn).__name__ == "_GatedEdgeCompiledBackward"
    ref = gated_edge(a, c, lin, b, s, 1e-12, h_add=h_add, sq_add=sq_add, n=n, times_z=times_z, fused=False,
                     reduce=reduce)
    assert torch.allclose(y, ref, atol=1e-12)
    leaves = [t for t in ins if t is not None]
    for x, r in zip(torch.autograd.grad((y * y.detach().cos()).sum(), leaves),
                    torch.autograd.grad((ref * ref.detach().cos()).sum(), leaves)):
        assert torch.allclose(x, r, atol=1e-10)


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("layout", ["dense", "edge"])
def test_edge_update_backward_matches_autograd(eager, layout, skip):
    g = torch.Generator().manual_seed(0)
    shapes = ((3, 5, 6, 4), (3, 5, 6, 4), (3, 1, 6, 4), (3, 5, 1, 4)) if layout == "dense" else ((20, 4),) * 4
    e, x, p, q = (torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes)
    e = e if skip else None
    assert torch.autograd.gradcheck(compiled.edge_update, (e, x, p, q))
    ref = x * F.silu(p + q) if e is None else e + x * F.silu(p + q)
    assert rel(compiled.edge_update(e, x, p, q), ref) < 1e-14


def _compiled_ran(before: dict) -> set:
    return set(compiled.COMPILE_SECONDS) - set(before)


@pytest.mark.parametrize("name,symmetry,kinds", [c for c in CASES if c[0] in ("trained_sirens", "mixed")
                                                 or c[:2] == ("trained_relu_cnns", "scale")],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_invariance_on_trained_networks_through_the_compiled_step(request, name, symmetry, kinds):
    """Exact invariance (float32) with the per-edge step compiled by Inductor; a small perturbation of
    the weights moves the latent by far more."""
    arch, params, acts = _case(request, name)
    params = params.float()
    gen = torch.Generator().manual_seed(7)
    moved = mixed_transform(arch, params, acts, gen) if kinds is None else random_transform(arch, params, kinds,
                                                                                           generator=gen)
    noisy = params + 0.01 * params.std() * torch.randn(params.shape, generator=gen)
    enc = encoder(arch, symmetry, dtype=torch.float32, d=D)
    assert compiled.applies(enc.layers[0].edge_lin.weight)
    with torch.no_grad():
        z, zg, zn = (enc(t, activation=acts) for t in (params, moved, noisy))
    assert {"gate_fwd_pre", "gate_fwd_post", "update_fwd"} <= set(compiled.COMPILE_SECONDS)
    sym, noise = rel(zg, z), rel(zn, z)
    assert sym <= 1e-4, f"{symmetry} not invariant on {name}: {sym:.2e}"
    assert noise > 100 * sym, f"noise {noise:.2e} vs symmetry {sym:.2e}"


@pytest.mark.parametrize("path", ["dense", "edge"])
def test_compiled_step_agrees_with_the_torch_gate(mixed_cnns, path):
    """edge_kernel="auto" (compiled at d = 72) and "torch" (`_GatedEdge`): the same latent and parameter
    gradients on a hetero batch in float32, and (dense path) within bf16 rounding of each other under autocast."""
    arch, params, acts = mixed_cnns
    params, acts = params[:6].float(), acts[:6]
    for amp, tol in ((False, 2e-5), (True, 3e-2))[:2 if path == "dense" else 1]:
        out = []
        for kernel in ("auto", "torch"):
            enc = encoder(arch, "hetero", dtype=torch.float32, d=D, path=path, edge_kernel=kernel, bidirectional=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                z = enc(params, activation=acts)
            grads = torch.autograd.grad(z.float().square().sum(), list(enc.parameters()), allow_unused=True)
            out.append((z.float(), [g for g in grads if g is not None]))
        assert {"gate_bwd_pre", "gate_bwd_post", "update_bwd"} <= set(compiled.COMPILE_SECONDS)
        assert rel(out[0][0], out[1][0]) < tol
        assert len(out[0][1]) == len(out[1][1])
        for x, y in zip(out[0][1], out[1][1]):
            assert rel(x, y) < (tol if not amp else 0.1)


def test_falls_back_to_the_torch_gate(monkeypatch, capsys):
    """GMNAE_NATIVE=0: the torch gate. Inductor failing to build (no C++ compiler): one note on stderr, that
    call's result computed eagerly, and the torch gate from then on -- the same numbers each way."""
    g = torch.Generator().manual_seed(0)
    a, c = torch.randn(2, 3, 4, D, generator=g), torch.randn(2, 1, 4, D, generator=g)
    lin = torch.nn.Linear(D, D)
    b = torch.zeros(D, requires_grad=True)
    ref = gated_edge(a, c, lin, b, -1.0, 1e-16, fused=False)
    monkeypatch.setenv("GMNAE_NATIVE", "0")
    y = gated_edge(a, c, lin, b, -1.0, 1e-16)
    assert type(y.grad_fn).__name__ == "_GatedEdgeBackward" and rel(y, ref) < 1e-6
    monkeypatch.setenv("GMNAE_NATIVE", "1")

    def no_compiler(fn):
        def fail(*args):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nno compiler")
        return fail

    fresh = compiled._Compiled(compiled.gate_fwd_pre)
    monkeypatch.setattr(compiled, "_compile", no_compiler)
    monkeypatch.setattr(compiled, "_gate_fwd_pre", fresh)
    monkeypatch.setattr(compiled, "_broken", False)
    y = gated_edge(a, c, lin, b, -1.0, 1e-16)
    assert type(y.grad_fn).__name__ == "_GatedEdgeCompiledBackward" and rel(y, ref) < 1e-6
    assert "torch.compile could not build the per-edge step (InductorError" in capsys.readouterr().err
    assert not compiled.applies(lin.weight)
    y = gated_edge(a, c, lin, b, -1.0, 1e-16)
    assert type(y.grad_fn).__name__ == "_GatedEdgeBackward" and rel(y, ref) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_exp_sigmoids_of_the_sign_gate(dtype):
    """Sign flips: σ(y + b) and σ(b - y) from one exp per value: equal to torch.sigmoid (relative 1e-5) while
    |y| <= 60, saturated beyond (within e^(|b| - 60) < 1e-20 of it, out to |y| = 200), finite everywhere;
    a per-network ±1 tensor picks σ(b - y) or σ(y + b)."""
    y = torch.linspace(-200, 200, 4001, dtype=dtype).view(-1, 1)
    b = torch.linspace(-5, 5, 7, dtype=dtype)
    u1, sg1, u2, sg2 = compiled._sigmoids(y, b, -1.0)
    inside = y.abs().expand_as(sg1) <= 60
    assert torch.equal(u1, y + b) and torch.equal(u2, b - y)
    for got, ref in ((sg1, torch.sigmoid(y + b)), (sg2, torch.sigmoid(b - y))):
        assert torch.isfinite(got).all()
        assert torch.allclose(got[inside], ref[inside], rtol=1e-5, atol=0)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-20)
    s = torch.tensor([1.0, -1.0], dtype=dtype).repeat(2001)[:4001].view(-1, 1)
    _, _, u2s, sg2s = compiled._sigmoids(y, b, s)
    assert torch.equal(u2s, torch.where(s < 0, b - y, y + b))
    assert torch.allclose(sg2s, torch.sigmoid(u2s), rtol=1e-5, atol=1e-20)
