"""Coordinate grids for rendering INRs (docs/design.md §2, MNIST-INR).

The input is (x, y) with x the column and y the row coordinate on [-1, 1], flattened row by row
(NumPy `meshgrid` default `xy` indexing), so a rendering reshaped to (H, W) is the image upright.
"""
from __future__ import annotations

import torch


def coordinate_grid(height: int = 28, width: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """`[H*W, 2]` coordinates, row-major."""
    width = width or height
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype)
    x, y = torch.meshgrid(xs, ys, indexing="xy")  # x[r, c] = xs[c], y[r, c] = ys[r]
    return torch.stack([x, y], dim=-1).reshape(-1, 2)


def psnr(mse: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB of images with values in [0, peak]."""
    return 10.0 * torch.log10(peak**2 / mse.clamp_min(1e-12))
