"""The embedded default task: scikit-learn's bundled digits (1,797 grayscale 8x8 images, 10 classes).

No download: the images ship inside scikit-learn. Used two ways:
- INR targets: each 8x8 image upsampled to 28x28 in [0, 1] (`inr_targets`), fitted on the 28x28 grid;
- CNN task: images scaled to [-1, 1], split train/test with a fixed seed (`classification_split`).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .split import fixed_split, split_images

N_IMAGES = 1797
TEST_FRACTION = 0.25


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def images01() -> torch.Tensor:
    """`[1797, 8, 8]` in [0, 1]."""
    return torch.from_numpy(_load()[0].copy())


def labels() -> torch.Tensor:
    return torch.from_numpy(_load()[1].copy())


def inr_targets(size: int = 28) -> torch.Tensor:
    """`[1797, size*size]` in [0, 1]: the images upsampled (bilinear) and flattened row by row."""
    up = F.interpolate(images01().unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    return up.clamp(0, 1).reshape(N_IMAGES, size * size)


def classification_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/test image indices for the digits classification task."""
    return fixed_split(N_IMAGES, TEST_FRACTION, seed)


def classification_images(split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, 1, 8, 8]` in [-1, 1], labels `[N]`) for the train or test part of the task."""
    return split_images(images01(), labels(), split, classification_split(seed))
