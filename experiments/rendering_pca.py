"""Shared by the issue-11 diagnostics (experiments/decoder_or_encoder): an INR zoo's renderings and their principal components.

    from experiments.rendering_pca import RenderingPCA, load_renderings
"""
from __future__ import annotations

import math

import torch

from gmnae.tasks.grid import coordinate_grid, psnr
from gmnae.weightspace import siren_render
from gmnae.zoo import Zoo


def load_renderings(zoo_dir: str, splits=("train", "val", "test"), resolution: int = 28):
    """(zoo, {split: params [n, P]}, {split: renderings [n, resolution²]})."""
    zoo, coords = Zoo(zoo_dir), coordinate_grid(resolution)
    params = {s: torch.from_numpy(zoo.read_params(s)).float() for s in splits}
    with torch.no_grad():
        renders = {s: siren_render(zoo.arch, params[s], coords).squeeze(-1) for s in splits}
    return zoo, params, renders


class RenderingPCA:
    """The top-k principal components of the train renderings; codes are whitened (unit variance on train)."""

    def __init__(self, train_renders: torch.Tensor, k: int):
        self.mean = train_renders.mean(0)
        _, sv, v = torch.linalg.svd(train_renders - self.mean, full_matrices=False)
        self.basis, self.scale = v[:k], sv[:k] / math.sqrt(len(train_renders))

    def code(self, renders: torch.Tensor) -> torch.Tensor:
        return (renders - self.mean) @ self.basis.T / self.scale

    def psnr(self, code: torch.Tensor, renders: torch.Tensor) -> float:
        """Mean PSNR of mean + code · basis against `renders`."""
        return float(psnr((self.mean + (code * self.scale) @ self.basis - renders).pow(2).mean(1)).mean())
