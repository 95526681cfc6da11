"""CIFAR-10 task images for the Small CNN Zoo, read from the standard local python-version batches.

    x, y = grayscale_images("data/cifar10", "train")   # [50000, 1, 32, 32] in [-1, 1], labels [50000]
    x, y = grayscale_images("data/cifar10", "test")    # [10000, 1, 32, 32]

`data_root` is the `cifar-10-batches-py` folder of `cifar-10-python.tar.gz`, or a folder that holds
it. "train" = `data_batch_1` … `data_batch_5`, "test" = `test_batch`: the distillation loss trains on
the training images, evaluation uses the held-out test images. Nothing is downloaded.

Preprocessing is the zoo's own (Unterthiner et al., `train_network._preprocess_batch`): pixels / 255,
scaled to [-1, 1], then the mean over the colour channels (grayscale). Each batch is a pickled dict
with b"data" (uint8 [N, 3072], the R, G and B planes of 32x32 row-major images) and b"labels". The
batches are unpickled with a restricted unpickler that only rebuilds NumPy arrays and plain
containers, so a tampered file cannot run code.
"""
from __future__ import annotations

import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import GmnaeError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
SPLIT_FILES = {"train": TRAIN_FILES, "test": TEST_FILES}
HINT = ("get cifar-10-python.tar.gz (the 'CIFAR-10 python version' from "
        "https://www.cs.toronto.edu/~kriz/cifar.html), unpack it, and point the dataset's data_root at "
        f"the {FOLDER}/ folder or the folder that holds it")

# Globals a CIFAR-10 pickle (Python 2 cPickle or a Python 3 re-pickle) may need: NumPy array rebuilding.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def batches_dir(data_root) -> Path:
    """The folder holding the batch files: `data_root` itself or `data_root/cifar-10-batches-py`."""
    if data_root is None or str(data_root) == "":
        raise GmnaeError(f"no CIFAR-10 image folder given (set the dataset's data_root); {HINT}")
    root = Path(data_root).expanduser()
    for cand in (root, root / FOLDER):
        if all((cand / f).is_file() for f in TRAIN_FILES + TEST_FILES):
            return cand
    # Report what is missing relative to the more plausible of the two candidates.
    cand = root / FOLDER if (root / FOLDER).is_dir() else root
    missing = [f for f in TRAIN_FILES + TEST_FILES if not (cand / f).is_file()]
    raise GmnaeError(f"CIFAR-10 batches not found in {cand}: missing {', '.join(missing)}; {HINT}")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 [N, 3072], int64 labels [N])."""
    try:
        with open(path, "rb") as f:
            d = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise GmnaeError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}); {HINT}") from e
    if not isinstance(d, dict):
        raise GmnaeError(f"{path} holds a {type(d).__name__}, not a CIFAR-10 batch dict; {HINT}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise GmnaeError(f"{path} lacks the 'data' or 'labels' entry of a CIFAR-10 batch; {HINT}")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise GmnaeError(f"{path}: data {data.dtype} {data.shape} with {len(labels)} labels is not a "
                         f"CIFAR-10 batch (uint8 [N, 3072] and N labels); {HINT}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise GmnaeError(f"{path}: labels outside 0..9; {HINT}")
    return data, labels


def load_rgb(data_root, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 3, 32, 32], int64 [N]) of the "train" or "test" images."""
    if split not in SPLIT_FILES:
        raise GmnaeError(f"CIFAR-10 has image splits 'train' and 'test', not {split!r}")
    folder = batches_dir(data_root)
    parts = [read_batch(folder / f) for f in SPLIT_FILES[split]]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    return data, np.concatenate([p[1] for p in parts])


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """uint8 `[N, 3, H, W]` -> float32 `[N, 1, H, W]`: channel mean of the pixels scaled to [-1, 1]."""
    x = rgb.astype(np.float32) / np.float32(255.0) * np.float32(2.0) - np.float32(1.0)
    return x.mean(axis=1, keepdims=True, dtype=np.float32)


@lru_cache(maxsize=4)
def _cached(folder: str, split: str, mtime: float) -> tuple[np.ndarray, np.ndarray]:
    rgb, labels = load_rgb(folder, split)
    return to_grayscale(rgb), labels


def grayscale_images(data_root, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(`[N, 1, 32, 32]` float32 in [-1, 1], labels int64 `[N]`) as the Small CNN Zoo was trained.

    Cached per folder and split; the tensors share memory with the cache, so do not modify them in place.
    """
    if split not in SPLIT_FILES:
        raise GmnaeError(f"CIFAR-10 has image splits 'train' and 'test', not {split!r}")
    folder = batches_dir(data_root)
    mtime = max((folder / f).stat().st_mtime for f in SPLIT_FILES[split])
    x, y = _cached(str(folder.resolve()), split, mtime)
    return torch.from_numpy(x), torch.from_numpy(y)
