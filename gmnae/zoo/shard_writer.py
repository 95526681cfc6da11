"""Resumable zoo writing, shared by the forge (`gmnae zoo build`) and the importers (`gmnae zoo import`).

Both keep their state in `<out>/.build/`: `config.json` holds the settings (for imports, also the
inputs' fingerprint) of the run that started there; a rerun with the same settings resumes, other
settings are refused (`check_build_settings`). What is resumed differs by what a unit of work costs:
- the importers stream each shard straight to its final name (`stream_shard`, never the whole shard in
  memory) and mark it finished with `.build/<shard>.json` (`ResumableImport`); the manifest comes last;
- the forge writes each trained block to `.build/block-XXXXX.h5` (`write_block`; a rerun skips the
  `finished_blocks`) and assembles the split shards once all blocks exist.
Every file is written under a temporary name and renamed, so a killed run never leaves a half shard.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

import h5py
import numpy as np

from ..errors import GmnaeError, check_writable
from ..weightspace.architecture import Architecture
from .format import CHUNK_ROWS, MANIFEST, SPLITS, ZooWriter, sha256_file, write_meta, write_shard


class ImportInterrupted(RuntimeError):
    """Raised by `stop_after_shards` (tests and benchmarks simulate a killed import with it)."""


class BuildInterrupted(RuntimeError):
    """Raised by `stop_after_blocks` (tests and benchmarks simulate a killed build with it)."""


def check_build_settings(work: Path, config: dict, refused: Callable[[list[str]], str]) -> None:
    """Create `work` and record `config` in `work/config.json`; on a rerun compare with the recorded settings
    and raise GmnaeError(`refused(changed keys)`) if they differ."""
    check_writable(work, f"zoo folder {work.parent}")  # a read-only --out: one line, before anything starts
    work.mkdir(parents=True, exist_ok=True)
    cpath = work / "config.json"
    if cpath.exists():
        previous = json.loads(cpath.read_text())
        if previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise GmnaeError(refused(changed))
    else:
        cpath.write_text(json.dumps(config, indent=2))


# --------------------------------------------------------------------------------------------
# The importers: shards streamed to their final names, one marker per finished shard
# --------------------------------------------------------------------------------------------
def stream_shard(path: Path, n_params: int, planned: int, blocks: Iterable[tuple[np.ndarray, np.ndarray]],
                 meta: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]]) -> tuple[str, int]:
    """Write one shard in the `gmnae-zoo/1` format from blocks, never holding the whole shard in memory.

    `blocks` yields (params of the kept rows `[k, P]`, keep mask `[b]` over that block's planned rows);
    `meta` (or a function called once the blocks are consumed) holds the planned rows' columns and is
    cut down to the kept ones. Atomic: written under a temporary name and renamed. Returns
    (sha256, rows written).
    """
    tmp = Path(f"{path}.tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w", track_order=True) as f:
            ds = f.create_dataset("params", shape=(0, n_params), maxshape=(None, n_params), dtype=np.float32,
                                  chunks=(max(1, min(planned, CHUNK_ROWS)), n_params))
            n, keep = 0, []
            for params, mask in blocks:
                if len(params):
                    ds.resize(n + len(params), axis=0)
                    ds[n:n + len(params)] = params
                    n += len(params)
                keep.append(np.asarray(mask, dtype=bool))
            keep = np.concatenate(keep) if keep else np.zeros(0, bool)
            if len(keep) != planned:
                raise RuntimeError(f"shard {path.name}: {len(keep)} rows streamed, {planned} planned")
            meta = meta() if callable(meta) else meta
            write_meta(f.create_group("meta"), {k: np.asarray(v)[keep] for k, v in meta.items()}, n)
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest, n


class ResumableImport:
    """Shards go straight to their final names in `out`; `out/.build/` holds `config.json` (the import's
    settings and input fingerprint) and one `<shard>.json` marker per finished shard. A rerun with the
    same settings skips finished shards; other settings are refused. `finish` writes the manifest last
    and removes `.build/`."""

    def __init__(self, out: Path, config: dict):
        self.out = Path(out)
        self.work = self.out / ".build"
        if (self.out / MANIFEST).exists():
            raise GmnaeError(f"{self.out} already holds a finished zoo; remove it or pass another --out")
        config = json.loads(json.dumps(config))  # normalise tuples etc. for the comparison
        check_build_settings(self.work, config, lambda changed: (
            f"{self.work} holds an unfinished import with other settings or inputs ({', '.join(changed)}); "
            f"resume it with the same options and files, or delete {self.work} to start over"))
        self.shards: dict[str, list[dict]] = {}
        self.written = 0

    def finished(self, fname: str) -> dict | None:
        marker = self.work / f"{fname}.json"
        if not marker.exists():
            return None
        entry = json.loads(marker.read_text())
        path = self.out / fname
        if entry.get("count") == 0:
            return entry
        if not path.exists() or path.stat().st_size != entry.get("bytes"):
            return None  # the shard was lost or replaced: write it again
        return entry

    def shard(self, split: str, fname: str, n_params: int, planned: int,
              blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]], meta: Callable[[], dict],
              stop_after: int | None = None) -> dict:
        """Write (or skip, when finished before) one shard; `blocks` and `meta` are called only to write,
        `meta` after the blocks are consumed."""
        entry = self.finished(fname)
        if entry is None:
            if stop_after is not None and self.written >= stop_after:
                raise ImportInterrupted(f"stopped after {self.written} shard(s); run the same import again to resume")
            digest, n = stream_shard(self.out / fname, n_params, planned, blocks(), meta)
            if n == 0:
                (self.out / fname).unlink()
            entry = {"file": fname, "count": int(n), "sha256": digest,
                     "bytes": (self.out / fname).stat().st_size if n else 0, "planned": int(planned)}
            tmp = self.work / f"{fname}.json.tmp"
            tmp.write_text(json.dumps(entry))
            os.replace(tmp, self.work / f"{fname}.json")
            self.written += 1
        if entry["count"]:
            self.shards.setdefault(split, []).append({k: entry[k] for k in ("file", "count", "sha256")})
        return entry

    def finish(self, name: str, arch: Architecture, task: dict, info: dict,
               before_manifest: Callable[[], None] | None = None) -> dict:
        if before_manifest is not None:
            before_manifest()
        writer = ZooWriter(self.out, name, arch, task=task, info=info)
        writer.shards = {s: self.shards[s] for s in SPLITS if s in self.shards}
        manifest = writer.close()
        shutil.rmtree(self.work)
        return manifest


def fingerprint(*paths: Path) -> dict:
    """Size and modification time of input files: an import resumes only on the same inputs."""
    out = {}
    for p in paths:
        st = Path(p).stat()
        out[str(Path(p).resolve())] = [st.st_size, st.st_mtime_ns]
    return out


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="net", disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# The forge: one file per trained block under .build/, assembled into shards at the end
# --------------------------------------------------------------------------------------------
def block_path(work: Path, b: int) -> Path:
    return work / f"block-{b:05d}.h5"


def finished_blocks(work: Path) -> set[int]:
    """Indices of the blocks an earlier (interrupted) build already wrote."""
    return {int(p.stem.split("-")[1]) for p in work.glob("block-*.h5")}


def write_block(work: Path, b: int, params: np.ndarray, meta: dict[str, np.ndarray]) -> str:
    """Write block `b` atomically (see `format.write_shard`); returns its sha256."""
    return write_shard(block_path(work, b), params, meta)
