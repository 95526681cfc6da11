"""The encoder under bf16 autocast (`trainer.precision=bf16-mixed` on CPU): invariant up to bf16 rounding,
close to fp32, and trainable (the fused per-edge gate's backward included).

Tolerance: bf16 keeps 8 significant bits (unit roundoff u = 2^-8 ≈ 3.9e-3); under autocast every matmul's
output is rounded to it. A symmetry-moved input rounds differently, so the invariance error is bounded by
the two inputs' own deviation from fp32: |z_amp(g·w) - z_amp(w)| ≤ |z_amp(g·w) - z(g·w)| + |z(w) - z_amp(w)|
≈ 2 × (bf16 error), as z(g·w) = z(w) in fp32 to 1e-6. We assert 3× (the two errors are not equal) and that
the bf16 error itself is a few u (≤ 3e-2: a dozen roundings in sequence, random signs), and that another
trained network of the batch moves the latent far more (> 5x) than the symmetry does.
"""
from __future__ import annotations

import pytest
import torch

from gmnae.weightspace import random_transform

from .test_scalegmn import _case, _one_thread, encoder, mixed_cnns, mixed_transform, rel  # noqa: F401  (fixtures)

BF16_CASES = [("trained_sirens", "sign", "PD"), ("trained_relu_cnns", "scale", "PS"), ("mixed", "hetero", None),
              ("trained_relu_cnns", "permutation", "P")]


def _amp(enc, x, acts, path):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return enc(x, activation=acts, path=path).float()


@pytest.mark.parametrize("path", ["dense", "edge"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,symmetry,kinds", BF16_CASES, ids=[f"{s}-{n}" for n, s, _ in BF16_CASES])
def test_invariance_under_bf16_autocast(request, name, symmetry, kinds, bidirectional, path):
    arch, params, acts = _case(request, name)
    params = params.float()
    gen = torch.Generator().manual_seed(7)
    moved = (mixed_transform(arch, params, acts, gen) if kinds is None
             else random_transform(arch, params, kinds, generator=gen))
    # what a real change of network does to the latent: each network's neighbour in the batch, another
    # trained network (a small random perturbation was too close to bf16 rounding on some CPUs' zoos)
    other_acts = acts if acts is None or isinstance(acts, str) else (
        acts.roll(1, dims=0) if torch.is_tensor(acts) else [acts[-1], *acts[:-1]])
    enc = encoder(arch, symmetry, bidirectional, dtype=torch.float32, d=32)
    with torch.no_grad():
        z32 = enc(params, activation=acts, path=path)
        z, zg = (_amp(enc, t, acts, path) for t in (params, moved))
        zo = _amp(enc, params.roll(1, dims=0), other_acts, path)
    prec, sym, other = rel(z, z32), rel(zg, z), rel(zo, z)
    assert torch.isfinite(z).all()
    assert prec <= 3e-2, f"bf16 autocast deviates {prec:.2e} from fp32"
    assert sym <= 3 * prec + 1e-6, f"{symmetry} on {name}: {sym:.2e} vs bf16 rounding {prec:.2e}"
    assert other > 5 * sym, f"another network moves the latent {other:.2e}, the symmetry {sym:.2e}"


@pytest.mark.parametrize("bidirectional", [False, True], ids=["fwd", "bidir"])
@pytest.mark.parametrize("name,symmetry", [("trained_sirens", "sign"), ("mixed", "hetero")])
def test_bf16_autocast_gradients_are_close_to_fp32(request, name, symmetry, bidirectional):
    """One backward pass under autocast: every parameter gets a finite fp32 gradient within bf16 error of
    fp32's (the fused gate's hand-written backward does its two matmuls in bf16 as the forward did)."""
    arch, params, acts = _case(request, name)
    enc = encoder(arch, symmetry, bidirectional, dtype=torch.float32, d=32)
    grads = []
    for amp in (False, True):
        enc.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            z = enc(params.float(), activation=acts)
        assert z.dtype == (torch.bfloat16 if amp else torch.float32)
        (z.float() * torch.linspace(-1, 1, z.shape[1])).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in enc.parameters() if p.grad is not None]))
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in enc.parameters())
    assert len(grads[0]) == len(grads[1])
    assert torch.isfinite(grads[1]).all()
    # forward and backward roundings: about twice the forward's bf16 bound (2 x 3e-2), with margin for the
    # bidirectional layers' longer chains (measured: 0.4-6%); the direction, which AdamW follows, is closer still
    assert rel(grads[1], grads[0]) < 0.1
    assert torch.nn.functional.cosine_similarity(grads[1], grads[0], dim=0) > 0.99
