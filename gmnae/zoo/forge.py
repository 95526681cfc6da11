"""The zoo forge: train the built-in zoos on this machine, many networks at once.

    gmnae zoo build digits-inr [--seeds 2] [--size N] [--out zoo/digits-inr]
    gmnae zoo build digits-cnn [--size 2000]
    gmnae zoo build mnist5k-cnn [--size 2000] [--threads 1]

Which zoos there are, and which forge builds each, is the catalogue's (gmnae/zoo/catalogue.py).

Networks are trained in blocks of `block_size` as one batched problem (one `[B, P]` parameter
tensor, the batched functional forward, per-network optimizer state). Each finished block is written to
`<out>/.build/block-XXXXX.h5` atomically; a rebuilt (interrupted) build skips finished blocks.
Every random draw of a block comes from a generator seeded by (zoo seed, block index) — or by
the network's own seed — so an interrupted-then-resumed build yields exactly the same zoo.
When all blocks exist they are assembled into split shards and the manifest is written.

The forges themselves: `gmnae.zoo.inr_forge` (SIREN zoos) and `gmnae.zoo.cnn_forge` (CNN zoos).
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import GmnaeError
# The forges
from .cnn_forge import DigitsCNNConfig, DigitsCNNForge, MNIST5kCNNConfig, MNIST5kCNNForge
from .catalogue import forged
from .format import ZooWriter, read_shard_meta
from .inr_forge import (DigitsINRConfig, DigitsINRForge, IdxINRConfig, IdxINRForge, MNIST5kINRConfig, MNIST5kINRForge,
                        MNISTINRForge)
# resumable writing, shared with the importers
from .shard_writer import BuildInterrupted, block_path, check_build_settings, finished_blocks, progress_bar, write_block

import h5py


# Which zoo each forge builds is a catalogue row's (zoo/catalogue.py).
FORGES = {z.name: (z.forge, z.forge_config) for z in forged()}
IDX_ZOOS = tuple(z.name for z in forged() if z.fits_idx_files)  # fitted to IDX image files the user has (--src)


# --------------------------------------------------------------------------------------------
# Build driver: blocks, resume, assembly.
# --------------------------------------------------------------------------------------------
def make_forge(name: str, **overrides):
    if name not in FORGES:
        raise GmnaeError(f"no built-in zoo named {name!r}; built-in zoos: {', '.join(FORGES)} "
                         "(published zoos are imported: gmnae zoo import --help)")
    cls, cfg_cls = FORGES[name]
    known = {f for f in cfg_cls.__dataclass_fields__}
    cfg = cfg_cls(**{k: v for k, v in overrides.items() if v is not None and k in known})
    return cls(cfg)


def build_zoo(name: str, out: Path | str | None = None, progress: bool = True,
              stop_after_blocks: int | None = None, threads: int | None = None, **overrides) -> Path:
    """Build (or resume building) a built-in zoo; returns its folder. See the module docstring."""
    forge = make_forge(name, **overrides)
    out = Path(out or Path("zoo") / name)
    work = out / ".build"
    config = {"zoo": name, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(forge.cfg).items()}}
    if (out / "manifest.json").exists() and not work.exists():
        raise GmnaeError(f"{out} already holds a finished zoo; remove it or pass another --out")
    check_build_settings(work, config, lambda changed: (
        f"{work} holds an unfinished build with other settings ({', '.join(changed)}); "
        f"resume it with the same options or delete {work}"))
    # `threads` holds for this build only (tests and library callers keep their own setting).
    caller_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        bs = forge.cfg.block_size
        n_blocks = math.ceil(forge.n_networks / bs)
        done = finished_blocks(work)
        t0, trained = time.perf_counter(), 0
        bar = progress_bar(forge.n_networks, f"forging {name}", progress)
        bar.update(min(forge.n_networks, len(done) * bs))
        for b in range(n_blocks):
            if b in done:
                continue
            if stop_after_blocks is not None and trained >= stop_after_blocks:
                bar.close()
                raise BuildInterrupted(f"stopped after {trained} block(s); run the same build again to resume")
            ids = np.arange(b * bs, min((b + 1) * bs, forge.n_networks))
            params, meta = forge.train_block(ids)
            write_block(work, b, params, meta)
            trained += 1
            bar.update(len(ids))
        bar.close()
    finally:
        torch.set_num_threads(caller_threads)
    elapsed = time.perf_counter() - t0

    _assemble(forge, out, work, n_blocks, config)
    shutil.rmtree(work)
    if trained:
        n = sum(min(bs, forge.n_networks - b * bs) for b in range(n_blocks) if b not in done)
        print(f"trained {n} networks in {elapsed:.1f}s ({n / elapsed:.1f} networks/s) -> {out}")
    return out


def _assemble(forge, out: Path, work: Path, n_blocks: int, config: dict) -> None:
    info = {"build": config, **(forge.info() if hasattr(forge, "info") else {})}
    if hasattr(forge, "write_zoo_files"):  # files the zoo's task reads (e.g. its target images)
        forge.write_zoo_files(out)
    writer = ZooWriter(out, forge.name, forge.arch, task=forge.task(), info=info)
    for b in range(n_blocks):
        path = block_path(work, b)
        with h5py.File(path, "r") as f:
            params = f["params"][()]
        meta = read_shard_meta(path)
        split = meta.pop("split")
        for s in ("train", "val", "test"):
            rows = np.flatnonzero(split == s)
            if len(rows):
                writer.add(s, params[rows], {k: v[rows] for k, v in meta.items()})
    writer.close()
