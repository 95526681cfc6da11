"""28x28 image sets in the IDX format, read from files the user has: MNIST and Fashion-MNIST.

Both ship as the same four files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each gzipped or not); 60,000 training and
10,000 test images. Fashion-MNIST is a Debian/Ubuntu package:

    apt-get install dataset-fashion-mnist      # -> /usr/share/datasets/fashion-mnist/*.gz

Any folder holding the four files works (torchvision's `FashionMNIST/raw` or `MNIST/raw` too).
Nothing is downloaded. Every bad file stops with one line that names it and both ways to get the data.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import GmnaeError
from .mnist import IDX_FILES, SIZES, _idx_path, read_idx


@dataclass(frozen=True)
class IdxDataset:
    title: str
    default_src: str | None  # where a system package puts the files
    how_to_get: str          # both ways to get the files, for error messages
    subfolders: tuple[str, ...]  # where torchvision and others put them under a root


DATASETS = {
    "fmnist": IdxDataset(
        "Fashion-MNIST", "/usr/share/datasets/fashion-mnist",
        "get them with `apt-get install dataset-fashion-mnist` (files under /usr/share/datasets/fashion-mnist) "
        "or pass --src DIR, a folder with the four IDX files (gzipped or not, e.g. torchvision's FashionMNIST/raw)",
        ("raw", "FashionMNIST/raw", "fashion-mnist")),
    "mnist": IdxDataset(
        "MNIST", None,
        "pass --src DIR, a folder with the four MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gzipped or not, e.g. torchvision's MNIST/raw)",
        ("raw", "MNIST/raw", "mnist")),
}


def dataset(name: str) -> IdxDataset:
    if name not in DATASETS:
        raise GmnaeError(f"no IDX image set named {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def find_folder(name: str, src=None) -> Path:
    """The folder holding all four IDX files of `name` (`src`, or the system package's folder)."""
    ds = dataset(name)
    root = Path(src or ds.default_src or "").expanduser() if (src or ds.default_src) else None
    if root is None:
        raise GmnaeError(f"no {ds.title} folder given: {ds.how_to_get}")
    if not root.is_dir():
        raise GmnaeError(f"{ds.title} folder {root} does not exist: {ds.how_to_get}")
    names = [n for split in ("train", "test") for n in IDX_FILES[split]]
    for folder in [root, *(root / s for s in ds.subfolders)]:
        if all(_idx_path(folder, n) for n in names):
            return folder
    missing = [n for n in names if not _idx_path(root, n)]
    raise GmnaeError(f"{root} lacks the {ds.title} file(s) {', '.join(f'{n}[.gz]' for n in missing)}: {ds.how_to_get}")


@lru_cache(maxsize=2)
def _read(folder: str, title: str, how_to_get: str, stamp: tuple) -> dict[str, np.ndarray]:
    out = {}
    for split in ("train", "test"):
        ipath, lpath = (_idx_path(Path(folder), n) for n in IDX_FILES[split])
        try:
            images, labels = read_idx(ipath), read_idx(lpath)
        except GmnaeError as e:
            raise GmnaeError(f"{e}; {how_to_get}") from None
        # the published sets hold 60,000 / 10,000; smaller files in the same format (tests, subsets) work too
        if images.ndim != 3 or images.shape[1:] != (28, 28) or not len(images):
            raise GmnaeError(f"{ipath} holds images of shape {images.shape}, {title} has N x 28 x 28 "
                             f"(N = {SIZES[split]}): {how_to_get}")
        if labels.shape != (len(images),) or labels.max(initial=0) > 9:
            raise GmnaeError(f"{lpath} holds labels of shape {labels.shape} (max {labels.max(initial=0)}) for "
                             f"{len(images)} images in {ipath.name}; {title} has one label 0-9 per image: {how_to_get}")
        out[f"{split}_images"], out[f"{split}_labels"] = images, labels.astype(np.int64)
    return out


def load(name: str, src=None) -> dict[str, np.ndarray]:
    """`{train,test}_{images,labels}`: uint8 `[N, 28, 28]` and int64 `[N]` (60,000 train, 10,000 test)."""
    ds = dataset(name)
    folder = find_folder(name, src)
    paths = [_idx_path(folder, n) for split in ("train", "test") for n in IDX_FILES[split]]
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)  # a replaced file is read again
    return _read(str(folder.resolve()), ds.title, ds.how_to_get, stamp)
