"""The fixed train/test split of an embedded image task, and its images scaled for the CNNs."""
from __future__ import annotations

import numpy as np
import torch


def fixed_split(n_images: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) image indices, sorted; the same for every run with this seed."""
    perm = np.random.default_rng(seed).permutation(n_images)
    n_test = int(round(test_fraction * n_images))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_images(images01: torch.Tensor, labels: torch.Tensor, split: str,
                 train_test: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, 1, H, W]` in [-1, 1], labels `[N]`) of the "train" or "test" part."""
    idx = {"train": train_test[0], "test": train_test[1]}[split]
    return images01[idx].unsqueeze(1) * 2.0 - 1.0, labels[idx]
