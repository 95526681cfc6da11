"""MNIST from a local copy: the target images of the MNIST-INR zoo (DWSNets, Navon et al. 2023).

    images, labels = load_mnist("data/mnist", "train")   # uint8 [60000, 28, 28], int64 [60000]

Two layouts are read, whichever `root` (or `root/raw`, `root/MNIST/raw`, `root/mnist_png`) holds:

- the original idx files, gzipped or not: `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
  `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]` (also torchvision's `MNIST/raw/`);
- the `mnist_png` folders `{training,testing}/{label}/{idx}.png` — the layout DWSNets fitted its INRs
  on: the INR folder `mnist_png_training_2_23089` is the image `mnist_png/training/2/23089.png`, and
  `idx` is the image's position in the idx files, so either layout gives the same targets.

Nothing is downloaded. `inr_targets` serves the images an importer stored inside a zoo folder.
"""
from __future__ import annotations

import gzip
import re
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import GmnaeError, ZooError

SPLITS = ("train", "test")
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
PNG_DIRS = {"train": "training", "test": "testing"}
SIZES = {"train": 60000, "test": 10000}
HINT = ("put the four MNIST idx files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzipped or not) or the mnist_png folders "
        "training/{label}/{idx}.png and testing/{label}/{idx}.png in that folder")
ZOO_IMAGES = "mnist-images.npz"  # the file an importer stores inside a zoo folder


def _candidates(root: Path) -> list[Path]:
    return [root, root / "raw", root / "MNIST" / "raw", root / "mnist_png", root / "mnist"]


def _idx_path(folder: Path, name: str) -> Path | None:
    # "train-images-idx3-ubyte" is also distributed as "train-images.idx3-ubyte".
    dotted = re.sub(r"-(idx\d)-", r".\1-", name)
    for n in (name, dotted):
        for suffix in ("", ".gz"):
            p = folder / f"{n}{suffix}"
            if p.is_file():
                return p
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx-ubyte file (gzipped or not) as a uint8 array of the shape its header states."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise GmnaeError(f"{path} cannot be read ({e}); replace it with a good copy") from e
    if len(raw) < 4:
        raise GmnaeError(f"{path} is not an idx file (too short); replace it with a good copy")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code != 0x08 or not 1 <= ndim <= 4:
        raise GmnaeError(f"{path} is not an unsigned-byte idx file (magic {raw[:4].hex()}); "
                         "replace it with a good copy")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise GmnaeError(f"{path} holds {body.size} bytes of data, its header promises {dims}; "
                         "the file is truncated or corrupt")
    return body.reshape(dims)


def _read_idx_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    ipath, lpath = (_idx_path(folder, n) for n in IDX_FILES[split])
    if ipath is None or lpath is None:
        return None
    images, labels = read_idx(ipath), read_idx(lpath).astype(np.int64)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(labels) != len(images):
        raise GmnaeError(f"{ipath} / {lpath}: images {images.shape} and labels {labels.shape} are not MNIST "
                         "(N x 28 x 28 and N)")
    return images, labels


_PNG = re.compile(r"^(\d+)\.png$")


def _read_png_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray] | None:
    base = folder / PNG_DIRS[split]
    if not base.is_dir():
        return None
    from PIL import Image

    entries = []
    for label_dir in base.iterdir():
        if not (label_dir.is_dir() and label_dir.name.isdigit()):
            continue
        for p in label_dir.iterdir():
            m = _PNG.match(p.name)
            if m:
                entries.append((int(m.group(1)), int(label_dir.name), p))
    if not entries:
        return None
    entries.sort()
    idx = np.array([e[0] for e in entries])
    if len(np.unique(idx)) != len(idx):
        raise GmnaeError(f"{base}: an image index appears under two labels; the mnist_png copy is inconsistent")
    n = int(idx.max()) + 1
    if len(idx) != n:
        missing = np.setdiff1d(np.arange(n), idx)
        raise GmnaeError(f"{base}: {len(missing)} of the image indices 0..{n - 1} have no PNG "
                         f"(first missing: {missing[0]}.png); the mnist_png copy is incomplete")
    images = np.empty((n, 28, 28), np.uint8)
    labels = np.empty(n, np.int64)
    for i, label, p in entries:
        with Image.open(p) as im:
            a = np.asarray(im.convert("L"))
        if a.shape != (28, 28):
            raise GmnaeError(f"{p} is {a.shape[1]}x{a.shape[0]} pixels, not a 28x28 MNIST image")
        images[i], labels[i] = a, label
    return images, labels


def find_mnist(root) -> tuple[Path, str]:
    """(folder, "idx" | "png") of a local MNIST copy, or a GmnaeError naming what to put where."""
    if root is None or str(root) == "":
        raise GmnaeError(f"no MNIST folder given; {HINT}")
    root = Path(root).expanduser()
    if not root.exists():
        raise GmnaeError(f"MNIST folder {root} does not exist; {HINT}")
    for folder in _candidates(root):
        if all(_idx_path(folder, n) for s in SPLITS for n in IDX_FILES[s]):
            return folder, "idx"
        if all((folder / PNG_DIRS[s]).is_dir() for s in SPLITS):
            return folder, "png"
    for folder in _candidates(root):  # one split only is still usable for the images it has
        if any(_idx_path(folder, n) for s in SPLITS for n in IDX_FILES[s]):
            return folder, "idx"
        if any((folder / PNG_DIRS[s]).is_dir() for s in SPLITS):
            return folder, "png"
    raise GmnaeError(f"no MNIST images in {root}: {HINT}")


@lru_cache(maxsize=4)
def _load(folder: str, file_format: str, split: str, stamp: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    reader = _read_idx_pair if file_format == "idx" else _read_png_folder
    out = reader(Path(folder), split)
    if out is None:
        names = (" and ".join(f"{n}[.gz]" for n in IDX_FILES[split]) if file_format == "idx"
                 else f"{PNG_DIRS[split]}/{{label}}/{{idx}}.png")
        raise GmnaeError(f"the MNIST {split} images are missing from {folder}: expected {names}; {HINT}")
    return out


def load_mnist(root, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 `[N, 28, 28]`, int64 labels `[N]`) of MNIST's "train" (60,000) or "test" (10,000) set."""
    if split not in SPLITS:
        raise GmnaeError(f"MNIST has image sets 'train' and 'test', not {split!r}")
    folder, file_format = find_mnist(root)
    if file_format == "idx":  # a replaced file is read again
        stamp = tuple(p.stat().st_mtime_ns for n in IDX_FILES[split] if (p := _idx_path(folder, n)))
    else:
        p = folder / PNG_DIRS[split]
        stamp = (p.stat().st_mtime_ns,) if p.exists() else ()
    return _load(str(folder.resolve()), file_format, split, stamp)


# --------------------------------------------------------------------------------------------
# Targets stored inside an imported zoo
# --------------------------------------------------------------------------------------------
def save_zoo_images(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `{train,test}_{images,labels}` arrays to `path` (an .npz), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


@lru_cache(maxsize=2)
def _zoo_images(path: str, mtime: float) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def inr_targets(task: dict, meta: dict[str, np.ndarray], zoo_root=None) -> torch.Tensor | None:
    """`[N, 784]` targets in [0, 1] (row by row) for the networks in `meta`; None without stored images."""
    fname = task.get("images")
    if not fname:
        return None  # imported without --images: compare against the original INR's rendering
    if zoo_root is None:
        raise ZooError("the MNIST-INR zoo keeps its target images in its folder; pass the zoo folder (zoo_root)")
    path = Path(zoo_root) / fname
    if not path.is_file():
        raise ZooError(f"{path} is missing (the zoo's target images); re-import the zoo: "
                       "gmnae zoo import mnist-inr --src DIR --images MNIST_DIR")
    arrays = _zoo_images(str(path.resolve()), path.stat().st_mtime)
    sets, index = np.asarray(meta["mnist_set"]).astype(str), np.asarray(meta["image_index"], dtype=np.int64)
    out = np.empty((len(index), 28 * 28), np.float32)
    for s in np.unique(sets):
        rows = np.flatnonzero(sets == s)
        key = f"{s}_images"
        if key not in arrays:
            raise ZooError(f"{path} has no {s!r} images; re-import the zoo with --images")
        out[rows] = arrays[key][index[rows]].reshape(len(rows), -1)
    return torch.from_numpy(out / np.float32(255.0))
