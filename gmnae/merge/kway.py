"""K-way merges of networks of one architecture: naive averaging and Git Re-Basin's MergeMany.

    res = merge_many(arch, nets)            # nets [K, P] or [G, K, P] (G groups merged side by side)
    res.merged                              # [G, P] mean of the aligned networks, in the first network's units
    res.aligned                             # [G, K, P] network k moved onto common units (same function)
    merged = weighted_mean(nets, weights)   # naive averaging

MergeMany (Ainsworth et al. 2023, Algorithm 3): visit the K networks in a seeded random order and
weight-match each one to the mean of the *other* aligned networks; repeat the rounds until one
passes in which no network's assignment changes. Every match is one `match_weights` call
(gmnae/merge/matching.py, batched over the G groups, with its solvers and sign-aware variant); this
module never moves weights itself except through `transform`.

The matching variant follows the activation (`default_method`): `wm-signed` for sine/tanh (signed
permutations), `wm-scale` for ReLU. For `wm-scale` every network is first brought to the unit-norm
frame with the scale-aware variant's `unit_normalisation` (the canonical point of its positive
scaling orbit), and permutations are matched there: the mean of K networks is only meaningful when
all K sit in one scale frame, which per-pair `wm-scale` (into the *target's* frame) would not keep.
For `wm-signed` every network first gets canonical unit signs (`sign_canonicalisation`), then
signed permutations are matched from there.

The merged network is reported in the first network's units (for `wm-scale` also its scales), so
merging K transformed copies of one network gives that network back.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..weightspace.architecture import Architecture
from ..weightspace.layout import unflatten
from ..weightspace.symmetry import GroupElement, compose, identity_element, invert, random_element
from .matching import check_method, default_method, match_weights, transform, unit_normalisation
from .methods import names

KWAY_METHODS = names(inputs="K")  # naive, mergemany, ae, ae-endpoints (the method table: gmnae/merge/methods.py)


@dataclass
class MergeManyResult:
    merged: torch.Tensor            # [G, P] mean of the aligned networks, in the first network's units
    aligned: torch.Tensor           # [G, K, P] transform(nets[:, k], elements[k]) (function of nets[:, k])
    elements: list[GroupElement]    # per network k, batch G
    rounds: torch.Tensor            # [G] rounds run (the last one without an assignment change)
    converged: torch.Tensor         # [G] bool: a round without change happened within max_rounds
    method: str = ""                # the matching variant used


def normalise_weights(weights, k: int, dtype=torch.float64) -> torch.Tensor:
    """Non-negative weights of K inputs scaled to sum 1 (None: equal weights) -> `[K]`."""
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=dtype)
    w = torch.as_tensor(weights, dtype=dtype).flatten()
    if len(w) != k:
        raise ValueError(f"{len(w)} weights for {k} networks")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights {w.tolist()} must be finite, non-negative and not all zero")
    return w / w.sum()


def weighted_mean(nets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_k w_k nets[..., k, :] over the K axis (-2); equal weights by default."""
    w = normalise_weights(weights, nets.shape[-2], nets.dtype).to(nets.device)
    return (nets * w.view(-1, 1)).sum(-2)


def sign_canonicalisation(arch: Architecture, params: torch.Tensor) -> GroupElement:
    """The sign-flip element after which every hidden unit's largest-magnitude parameter (bias or incoming
    weight) is positive: one point of each sign orbit, layer by layer (flips of layer l−1 already
    pushed into W_l's input axis). Signed coordinate ascent started from raw weights stops in local
    optima on 16-23 % of planted PD / D tanh CNN pairs (mnist5k-cnn); from this frame on 0 of 82 in one
    draw (rare misses remain; MergeMany's restarts catch them)."""
    g = identity_element(arch, params.shape[0], device=params.device, dtype=params.dtype)
    prev = None
    for l, (w, b) in enumerate(unflatten(arch, params)[: len(arch.hidden_sizes)]):
        w = w.reshape(w.shape[0], w.shape[1], w.shape[2], -1)  # [n, out, in, k]
        if prev is not None:
            w = w * prev.view(prev.shape[0], 1, -1, 1)
        entries = torch.cat([b.unsqueeze(2), w.reshape(w.shape[0], w.shape[1], -1)], 2)
        top = torch.gather(entries, 2, entries.abs().argmax(2, keepdim=True)).squeeze(2)
        g.scales[l] = torch.where(top < 0, -1.0, 1.0).to(params.dtype)
        prev = g.scales[l]
    return g


def _same_assignment(g: GroupElement, h: GroupElement) -> torch.Tensor:
    """[G] bool: equal permutations and equal unit signs in every hidden layer (scales are not assigned)."""
    same = torch.ones(g.batch, dtype=torch.bool, device=g.perms[0].device)
    for p, q, pp, qq in zip(g.perms, g.scales, h.perms, h.scales):
        same &= (p == pp).all(1) & (torch.sign(q) == torch.sign(qq)).all(1)
    return same


def _select(g: GroupElement, idx: torch.Tensor) -> GroupElement:
    return GroupElement([p[idx] for p in g.perms], [s[idx] for s in g.scales])


def _assign(g: GroupElement, idx: torch.Tensor, h: GroupElement) -> None:
    for l in range(len(g.perms)):
        g.perms[l][idx] = h.perms[l].to(g.perms[l].device)
        g.scales[l][idx] = h.scales[l].to(g.scales[l])


def merge_many(arch: Architecture, nets: torch.Tensor, method: str | None = None, weights=None,
               max_rounds: int = 100, max_iter: int = 100, seed: int = 0, activation: str | None = None,
               init: str = "first", restarts: int = 4, **match_kw) -> MergeManyResult:
    """Git Re-Basin's MergeMany on `nets` `[K, P]` or `[G, K, P]`; see the module docstring.

    `method`: the matching variant (wm, wm-signed, wm-scale; default the activation's largest group).
    `weights`: of the final mean (equal by default); the matching targets are plain means, as in the paper.
    `init`: "first" (default) starts the rounds from every network matched to the first one;
    "identity" is the paper's start (raw weights): on 30 groups of planted copies of mnist5k-cnn/-inr
    networks it needed more rounds (5-7x the time) and left one group of 8 ReLU copies off by 1e-5.
    `restarts`: every match runs from this many starts (identity, then seeded random permutations) and
    keeps the best; a round replaces a network's assignment only when the new one is strictly closer
    to the mean of the others, so the MergeMany objective never decreases.
    `max_iter` / `seed` / `match_kw` go to every `match_weights` call.
    """
    single = nets.dim() == 2
    if single:
        nets = nets.unsqueeze(0)
    G, K, P = nets.shape
    if K < 2:
        raise ValueError("MergeMany needs at least 2 networks")
    act = activation or arch.activation
    method = method or default_method(act)
    if method == "naive":
        raise ValueError("MergeMany matches networks: use wm, wm-signed or wm-scale (naive averaging is weighted_mean)")
    check_method(method, act)
    dev, dtype = nets.device, nets.dtype

    # the frame the matching works in: every network at unit incoming norms (wm-scale), in canonical
    # unit signs (wm-signed), or raw (wm)
    if method == "wm-scale":
        pre = [unit_normalisation(arch, nets[:, k]) for k in range(K)]
        match = "wm"
    elif method == "wm-signed":
        pre = [sign_canonicalisation(arch, nets[:, k]) for k in range(K)]
        match = method
    else:
        pre = [identity_element(arch, G, device=dev, dtype=dtype) for _ in range(K)]
        match = method
    work = torch.stack([transform(arch, nets[:, k], pre[k]) for k in range(K)], 1)

    def best_match(target: torch.Tensor, b: torch.Tensor):
        """The best of `restarts` starts per row: identity, then random permutations of b (seeded).
        Pairwise coordinate ascent has local optima, also between exact copies."""
        gen_r = torch.Generator().manual_seed(seed)
        best = None
        for r in range(restarts):
            start = (identity_element(arch, len(b), device=dev, dtype=dtype) if r == 0 else
                     random_element(arch, len(b), "P", gen_r, device=dev, dtype=dtype))
            res = match_weights(arch, target, transform(arch, b, start) if r else b, match, max_iter=max_iter,
                                seed=seed + r, activation=act, **match_kw)
            res.element = compose(start, res.element)
            if best is None:
                best = res
                continue
            better = res.objective > best.objective
            best.aligned[better] = res.aligned[better]
            best.objective[better] = res.objective[better]
            _assign(best.element, torch.nonzero(better).squeeze(1), _select(res.element, better))
        return best

    aligned = work.clone()
    elements = [identity_element(arch, G, device=dev, dtype=dtype) for _ in range(K)]
    if init == "first":  # start from every network matched to the first (one batched call), not from raw weights
        rest = work[:, 1:].reshape(G * (K - 1), P)
        res = best_match(work[:, :1].expand(G, K - 1, P).reshape(G * (K - 1), P), rest)
        aligned[:, 1:] = res.aligned.view(G, K - 1, P)
        for k in range(1, K):
            _assign(elements[k], torch.arange(G, device=dev),
                    _select(res.element, torch.arange(k - 1, G * (K - 1), K - 1, device=dev)))
    elif init != "identity":
        raise ValueError(f"init {init!r}: use first or identity")
    rounds = torch.zeros(G, dtype=torch.long)
    converged = torch.zeros(G, dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_rounds):
        live = torch.nonzero(~converged).squeeze(1)
        if live.numel() == 0:
            break
        rounds[live] += 1
        changed = torch.zeros(live.numel(), dtype=torch.bool)
        lv = live.to(dev)
        for k in torch.randperm(K, generator=gen).tolist():
            target = torch.cat([aligned[lv, :k], aligned[lv, k + 1:]], 1).mean(1)
            res = best_match(target, work[lv, k])
            # coordinate ascent: a new assignment only where it is strictly better against this target
            current = (target * aligned[lv, k]).sum(-1)
            tol = 1e-12 + 64 * torch.finfo(dtype).eps * (target.abs() * aligned[lv, k].abs()).sum(-1)
            take = (res.objective > current + tol) & ~_same_assignment(res.element, _select(elements[k], lv))
            changed |= take.cpu()
            sel = torch.nonzero(take).squeeze(1)
            _assign(elements[k], lv[sel], _select(res.element, sel))
            aligned[lv[sel], k] = res.aligned[sel]
        converged[live] = ~changed

    # report everything in the first network's units: undo its permutation (and its normalisation)
    back = compose(invert(elements[0]), invert(pre[0]))
    elements = [compose(compose(pre[k], elements[k]), back) for k in range(K)]
    aligned = torch.stack([transform(arch, aligned[:, k], back) for k in range(K)], 1)
    aligned[:, 0] = nets[:, 0]  # exactly (the round trip above is the identity up to round-off)
    merged = weighted_mean(aligned, weights)
    if single:
        merged, aligned = merged[0], aligned[0]
    return MergeManyResult(merged, aligned, elements, rounds, converged, method)
