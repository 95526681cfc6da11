"""Interpolation curves of many pairs at once (docs/design.md §6).

A *path* is a tensor `[n_pairs, L, P]` of parameter vectors; an *evaluator* turns it into losses
`[n_pairs, L]` with the batched functional forward. Any path plugs in: the linear path between
raw or weight-matched endpoints, between autoencoder reconstructions `dec(enc(a))`, `dec(enc(b))`,
or the decodings of interpolated latents.

    lam = lambda_grid(25)
    path = method_path(arch, a, b, "wm", lam)                  # naive / wm / wm-signed / wm-scale
    ev = InrEvaluator(arch, targets)                            # or ClassifierEvaluator(arch, x, y, act)
    curves = ev(path)                                           # {"mse": [n, L], "mse_endpoint": [n, L]}
    metrics = barrier_metrics(curves[ev.primary], lam)

    # autoencoder paths (the training callback): endpoints are reconstructions, the reference is a
    path = linear_path(dec(enc(a)), dec(enc(b)), lam)
    curves = InrEvaluator(arch, targets, reference=a)(path)

Losses: INR — per-pair MSE of the rendering against the target image (`mse`, only when targets
exist) and against the rendering of the reference network (`mse_endpoint`; the reference is `a`
when given, else the path's first point). CNN — cross-entropy (`loss`) and accuracy (`accuracy`)
on held-out task images.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..weightspace.architecture import Architecture
from ..weightspace.functional import cnn_forward, siren_render
from ..weightspace.family import network_family
from .matching import match_weights

DEFAULT_POINTS = 25
# Elements of the largest activation tensor one forward chunk may hold (float32: 4 bytes each).
DEFAULT_BUDGET = 2**25


def lambda_grid(n_points: int = DEFAULT_POINTS, dtype=torch.float32, device=None) -> torch.Tensor:
    """An even grid of `n_points` λ values from 0 to 1 inclusive."""
    if n_points < 2:
        raise ValueError("an interpolation grid needs at least 2 points")
    return torch.linspace(0.0, 1.0, n_points, dtype=dtype, device=device)


def linear_path(a: torch.Tensor, b: torch.Tensor, lambdas: torch.Tensor | int = DEFAULT_POINTS) -> torch.Tensor:
    """θ(λ) = (1−λ)a + λb for a, b `[n, P]` -> `[n, L, P]`."""
    if isinstance(lambdas, int):
        lambdas = lambda_grid(lambdas, a.dtype, a.device)
    lam = lambdas.to(a.device, a.dtype).view(1, -1, 1)
    return a.unsqueeze(1) * (1 - lam) + b.unsqueeze(1) * lam


def method_path(arch: Architecture, a: torch.Tensor, b: torch.Tensor, method: str = "naive",
                lambdas: torch.Tensor | int = DEFAULT_POINTS, activation: str | None = None, **match_kw) -> torch.Tensor:
    """The linear path after aligning b to a with `method` (naive: no alignment) -> `[n, L, P]`."""
    aligned = b if method == "naive" else match_weights(arch, a, b, method, activation=activation, **match_kw).aligned
    return linear_path(a, aligned, lambdas)


def _chunks(total: int, size: int):
    for s in range(0, total, max(1, size)):
        yield slice(s, min(total, s + max(1, size)))


class InrEvaluator:
    """Losses of INR paths: rendering vs target images and vs the reference rendering.

    targets `[n, H*W]` (or None), one per pair; reference `[n, P]` (optional, default: path[:, 0]).
    """

    primary = "mse"

    def __init__(self, arch: Architecture, targets: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                 resolution: int = 28, budget: int = DEFAULT_BUDGET):
        from ..tasks.grid import coordinate_grid

        self.arch, self.targets, self.reference = arch, targets, reference
        self.coords = coordinate_grid(resolution)
        self.budget = budget
        if targets is None:
            self.primary = "mse_endpoint"

    def render(self, params: torch.Tensor) -> torch.Tensor:
        """`[m, P]` -> `[m, H*W]` (first output channel)."""
        coords = self.coords.to(params.device, params.dtype)
        per_net = coords.shape[0] * max(self.arch.hidden_sizes or (1,))
        out = [siren_render(self.arch, params[s], coords)[..., 0] for s in _chunks(len(params), self.budget // per_net)]
        return torch.cat(out) if out else params.new_zeros(0, coords.shape[0])

    @torch.no_grad()
    def __call__(self, path: torch.Tensor) -> dict[str, torch.Tensor]:
        n, L, P = path.shape
        img = self.render(path.reshape(n * L, P)).view(n, L, -1)
        ref = self.render(self.reference.to(path)) if self.reference is not None else img[:, 0]
        out = {"mse_endpoint": (img - ref.unsqueeze(1)).pow(2).mean(-1)}
        if self.targets is not None:
            out["mse"] = (img - self.targets.to(img).unsqueeze(1)).pow(2).mean(-1)
        return out


class ClassifierEvaluator:
    """Cross-entropy and accuracy of CNN paths on a fixed image set (held-out task images).

    `activation`: a name, or one per pair (mixed-activation zoos); default the architecture's.
    """

    primary = "loss"

    def __init__(self, arch: Architecture, images: torch.Tensor, labels: torch.Tensor,
                 activation: str | Sequence[str] | None = None, budget: int = DEFAULT_BUDGET):
        self.arch, self.images, self.labels = arch, images, labels.long()
        self.activation = activation
        self.budget = budget

    def _acts(self, n: int, L: int):
        act = self.activation if self.activation is not None else self.arch.activation
        if isinstance(act, str):
            return act
        act = list(act)
        if len(act) != n:
            raise ValueError(f"{len(act)} activations for {n} pairs")
        return [x for x in act for _ in range(L)]

    @torch.no_grad()
    def __call__(self, path: torch.Tensor) -> dict[str, torch.Tensor]:
        n, L, P = path.shape
        flat = path.reshape(n * L, P)
        acts = self._acts(n, L)
        x = self.images.to(flat.device, flat.dtype)
        y = self.labels.to(flat.device)
        widest = max(l.n_out for l in self.arch.layers)
        per_net = x.shape[0] * x[0].numel() * widest
        losses, accs = [], []
        for s in _chunks(n * L, self.budget // per_net):
            act = acts if isinstance(acts, str) else acts[s]
            logits = cnn_forward(self.arch, flat[s], x, act)  # [m, N, C]
            losses.append(F.cross_entropy(logits.transpose(1, 2), y.expand(logits.shape[0], -1),
                                          reduction="none").mean(1))
            accs.append((logits.argmax(-1) == y).to(flat.dtype).mean(1))
        return {"loss": torch.cat(losses).view(n, L), "accuracy": torch.cat(accs).view(n, L)}


def interpolation_curves(path: torch.Tensor, evaluator) -> dict[str, torch.Tensor]:
    """Losses `[n, L]` per metric of a path `[n, L, P]` (the evaluator decides the metrics)."""
    return evaluator(path)


def method_curves(arch: Architecture, a: torch.Tensor, b: torch.Tensor, method: str, evaluator,
                  lambdas: torch.Tensor | int = DEFAULT_POINTS, activation: str | None = None,
                  **match_kw) -> dict[str, torch.Tensor]:
    """Curves of the pairs (a, b) for `naive` / `wm` / `wm-signed` / `wm-scale`."""
    return evaluator(method_path(arch, a, b, method, lambdas, activation=activation, **match_kw))


# ---------------------------------------------------------------------------------------------
# Evaluators from a zoo's task
# ---------------------------------------------------------------------------------------------
def zoo_evaluator(zoo, split: str, indices: np.ndarray, activation=None, data_root: str | None = None,
                  reference: torch.Tensor | None = None, budget: int = DEFAULT_BUDGET,
                  meta: dict[str, np.ndarray] | None = None, images: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The evaluator for pairs whose first networks are rows `indices` of the zoo split `split`.

    INR zoos: targets of those networks' images (None when the zoo has none: then the loss is
    against the rendering of the reference / first endpoint). CNN zoos: the task's held-out images.
    `meta` (the split's metadata) and `images` (the held-out images and labels): already in memory,
    so that an evaluation with many pair types reads neither again.
    """
    arch = zoo.arch
    if not network_family(arch).classifies:
        from ..tasks.inr_targets import inr_targets

        meta = zoo.read_meta(split) if meta is None else meta
        meta = {k: v[np.asarray(indices)] for k, v in meta.items()}
        targets = inr_targets(zoo.task, meta, zoo.root)
        resolution = int(zoo.task.get("resolution", 28))
        return InrEvaluator(arch, targets, reference=reference, resolution=resolution, budget=budget)
    if images is None:
        from ..tasks.classification import task_images

        images = task_images(zoo.task, "test", data_root)
    if activation is None:
        acts = zoo.activations(split)
        activation = [acts[i] for i in np.asarray(indices)]
    return ClassifierEvaluator(arch, *images, activation, budget=budget)
