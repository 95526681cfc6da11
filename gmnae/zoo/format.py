"""The zoo format: a folder with `manifest.json` and HDF5 shards.

    zoo/digits-inr/
      manifest.json            architecture, activation, task, splits -> shards (file, count, sha256)
      train-00000.h5           params [N, P] float32 chunked along the model axis; meta/<column> [N]
      val-00000.h5 ...

Every file is written under a temporary name and renamed into place, and the manifest is written
last: a folder without a manifest is an unfinished build, never a silently partial zoo.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import ZooError
from ..weightspace.architecture import Architecture

MANIFEST = "manifest.json"
FORMAT = "gmnae-zoo/1"
SPLITS = ("train", "val", "test")
CHUNK_ROWS = 64
MAX_SHARD_BYTES = 256 * 2**20
def missing_zoo_hint(path: Path) -> str:
    """How to get a missing zoo: its catalogue row's way (zoo/catalogue.py) when the folder has a zoo's name."""
    from .catalogue import ZOOS

    entry = ZOOS.get(Path(path).name)
    how = entry.how_to_get(path) if entry else f"`gmnae zoo build NAME --out {path}` or `gmnae zoo import ... --out {path}`"
    return f"no zoo at {path} (no {MANIFEST}); create it with {how}"


def sha256_file(path: Path, block: int = 4 * 2**20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_meta(group: h5py.Group, meta: dict, n: int) -> None:
    """Metadata columns of `n` networks into a shard's `meta` group (strings as UTF-8)."""
    for key, col in meta.items():
        col = np.asarray(col)
        if len(col) != n:
            raise ValueError(f"metadata column {key!r} has {len(col)} rows for {n} networks")
        if col.dtype.kind in "USO":
            group.create_dataset(key, data=col.astype(str).astype(object), dtype=h5py.string_dtype())
        else:
            group.create_dataset(key, data=col)


def write_shard(path: Path, params: np.ndarray, meta: dict[str, np.ndarray]) -> str:
    """Write one shard atomically; returns its sha256."""
    params = np.ascontiguousarray(params, dtype=np.float32)
    n, p = params.shape
    tmp = Path(f"{path}.tmp{os.getpid()}")
    with h5py.File(tmp, "w", track_order=True) as f:
        f.create_dataset("params", data=params, chunks=(max(1, min(n, CHUNK_ROWS)), p))
        write_meta(f.create_group("meta"), meta, n)
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    return digest


def read_shard_meta(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        out = {}
        for key, ds in f["meta"].items():
            col = ds[()]
            if ds.dtype.kind == "O":
                col = np.array([v.decode() if isinstance(v, bytes) else v for v in col], dtype=object)
            out[key] = col
        return out


class ZooWriter:
    """Accumulates networks per split and writes bounded shards; `close()` writes the manifest.

        with ZooWriter(root, "digits-inr", arch, task={...}) as w:
            w.add("train", params, {"label": labels, "psnr": psnr})
    """

    def __init__(self, root, name: str, arch: Architecture, task: dict | None = None,
                 max_shard_bytes: int = MAX_SHARD_BYTES, info: dict | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name, self.arch, self.task, self.info = name, arch, task or {}, info or {}
        self.rows_per_shard = max(1, max_shard_bytes // (4 * arch.n_params))
        self.buffers: dict[str, list] = {}
        self.shards: dict[str, list[dict]] = {}

    def add(self, split: str, params, meta: dict) -> None:
        params = np.asarray(params, dtype=np.float32)
        if params.ndim != 2 or params.shape[1] != self.arch.n_params:
            raise ValueError(f"params of shape {params.shape} do not fit {self.arch.describe()}")
        self.buffers.setdefault(split, []).append((params, {k: np.asarray(v) for k, v in meta.items()}))
        while sum(len(p) for p, _ in self.buffers[split]) >= self.rows_per_shard:
            self._flush(split, self.rows_per_shard)

    def _flush(self, split: str, rows: int | None = None) -> None:
        buf = self.buffers.get(split) or []
        if not buf:
            return
        params = np.concatenate([p for p, _ in buf])
        meta = {k: np.concatenate([m[k] for _, m in buf]) for k in buf[0][1]}
        rows = len(params) if rows is None else rows
        index = len(self.shards.setdefault(split, []))
        fname = f"{split}-{index:05d}.h5"
        digest = write_shard(self.root / fname, params[:rows], {k: v[:rows] for k, v in meta.items()})
        self.shards[split].append({"file": fname, "count": int(rows), "sha256": digest})
        rest = len(params) - rows
        self.buffers[split] = [(params[rows:], {k: v[rows:] for k, v in meta.items()})] if rest else []

    def close(self) -> dict:
        for split in list(self.buffers):
            self._flush(split)
        activation = self.arch.activation
        manifest = {
            "format": FORMAT,
            "name": self.name,
            "architecture": self.arch.to_dict(),
            "activation": activation,
            "n_params": self.arch.n_params,
            "task": self.task,
            "splits": {s: {"count": sum(x["count"] for x in sh), "shards": sh} for s, sh in self.shards.items()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.info,
        }
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=2))
        return manifest

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    count: int
    sha256: str


class Zoo:
    """Read access to a zoo folder. Cheap to construct: opens only the manifest."""

    def __init__(self, root):
        self.root = Path(root)
        mpath = self.root / MANIFEST
        if self.root.is_file():
            raise ZooError(f"{self.root} is a file, not a zoo folder; pass the folder that holds {MANIFEST}")
        if not mpath.exists():
            raise ZooError(missing_zoo_hint(self.root))
        try:
            self.manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise ZooError(f"{mpath} is not valid JSON ({e}); rebuild or re-import the zoo") from e
        if self.manifest.get("format") != FORMAT:
            raise ZooError(f"{mpath} has format {self.manifest.get('format')!r}, expected {FORMAT!r}")
        for key in ("architecture", "splits"):
            if not isinstance(self.manifest.get(key), dict):
                raise ZooError(f"{mpath} has no {key!r} entry (a zoo manifest names its architecture and splits); "
                               "rebuild or re-import the zoo")
        try:
            self.arch = Architecture.from_dict(self.manifest["architecture"])
        except (KeyError, TypeError, ValueError) as e:
            raise ZooError(f"{mpath}: its 'architecture' entry cannot be read ({type(e).__name__}: {e}); "
                           "rebuild or re-import the zoo") from e

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def task(self) -> dict:
        return self.manifest.get("task", {})

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def shards(self, split: str) -> list[ShardInfo]:
        if split not in self.manifest["splits"]:
            raise ZooError(f"zoo {self.root} has no split {split!r} (it has {', '.join(self.splits)})")
        return [ShardInfo(self.root / s["file"], s["count"], s["sha256"]) for s in self.manifest["splits"][split]["shards"]]

    def count(self, split: str) -> int:
        return sum(s.count for s in self.shards(split))

    def _open(self, shard: ShardInfo) -> h5py.File:
        if not shard.path.exists():
            raise ZooError(f"shard {shard.path} is missing; rebuild or re-import the zoo, or run `gmnae zoo verify {self.root}`")
        try:
            return h5py.File(shard.path, "r")
        except OSError as e:
            raise ZooError(f"shard {shard.path} cannot be read as HDF5 ({e}); rebuild or re-import the zoo") from e

    def read_params(self, split: str, limit: int | None = None) -> np.ndarray:
        """All networks of a split as one `[N, P]` array (for small zoos and evaluation sets)."""
        parts, left = [], limit
        for shard in self.shards(split):
            with self._open(shard) as f:
                take = shard.count if left is None else min(left, shard.count)
                parts.append(f["params"][:take])
            if left is not None:
                left -= take
                if left <= 0:
                    break
        return np.concatenate(parts) if parts else np.zeros((0, self.arch.n_params), np.float32)

    def read_meta(self, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
        cols: dict[str, list] = {}
        for shard in self.shards(split):
            self._open(shard).close()
            for k, v in read_shard_meta(shard.path).items():
                cols.setdefault(k, []).append(v)
        out = {k: np.concatenate(v) for k, v in cols.items()}
        return {k: v[:limit] for k, v in out.items()} if limit is not None else out

    def activations(self, split: str) -> list[str]:
        """Each network's activation (the architecture's, or per network for mixed zoos)."""
        if self.arch.activation != "mixed":
            return [self.arch.activation] * self.count(split)
        return [str(a) for a in self.read_meta(split)["activation"]]

    def summary(self) -> str:
        lines = [f"zoo {self.name} at {self.root}", f"  architecture: {self.arch.describe()}",
                 f"  task: {json.dumps(self.task)}"]
        for split in self.splits:
            meta = self.read_meta(split)
            lines.append(f"  {split}: {self.count(split)} networks in {len(self.shards(split))} shard(s)")
            for key, col in sorted(meta.items()):
                if col.dtype.kind == "f":
                    q = np.nanpercentile(col, [0, 50, 100])
                    lines.append(f"    {key:>22}: min {q[0]:.4g}  median {q[1]:.4g}  max {q[2]:.4g}")
                elif col.dtype.kind == "O" and len(set(col.tolist())) <= 8:
                    vals, counts = np.unique(col.astype(str), return_counts=True)
                    lines.append(f"    {key:>22}: " + ", ".join(f"{v}={c}" for v, c in zip(vals, counts)))
        return "\n".join(lines)


def open_zoo(root) -> Zoo:
    return Zoo(root)
