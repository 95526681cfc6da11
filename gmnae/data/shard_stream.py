"""Streaming a zoo's splits from HDF5 shards into training.

`ShardStream` is an IterableDataset that yields whole batches:

1. the split's rows are grouped into *units* (a shard's chunk of `CHUNK_ROWS` consecutive rows);
   each epoch the units are shuffled (seed, epoch), then rows are shuffled within a bounded
   window (`shuffle_buffer`), so reads stay chunk-sequential;
2. the resulting order is cut into one contiguous block per DDP rank, every rank the same size:
   training drops the remainder (no network is read twice in an epoch), evaluation pads the
   last rank with rows flagged `valid = 0` (every network counted exactly once);
3. each rank's block is cut into batches; DataLoader workers take runs of consecutive batches
   (one shuffle window each, read in one pass over its chunks) round-robin, so every rank yields
   the same number of batches whatever the worker count (DDP never waits).

HDF5 files are opened lazily inside each worker (never before workers fork) and kept open.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import h5py
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ZooError
from ..zoo.format import CHUNK_ROWS, Zoo


@dataclass
class Batch:
    """What a training step receives."""

    params: torch.Tensor      # [B, P] float32
    index: torch.Tensor       # [B] row index within the split
    valid: torch.Tensor       # [B] 1.0 for real rows, 0.0 for DDP padding
    activation: torch.Tensor  # [B] activation code (weightspace/registry.py)

    def to(self, device, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.params, self.index, self.valid,
                                                                         self.activation)))

    def pin_memory(self) -> "Batch":
        return Batch(*(t.pin_memory() for t in (self.params, self.index, self.valid, self.activation)))

    def __len__(self) -> int:
        return len(self.index)



def _collate_identity(x):
    return x


class ShardStream(IterableDataset):
    """Batches of one split of a zoo, shuffled chunk-aware, sharded over DDP ranks and workers."""

    def __init__(self, zoo: Zoo, split: str, batch_size: int, rows: np.ndarray | None = None,
                 shuffle: bool = True, drop_last: bool = True, shuffle_buffer: int = 1024, seed: int = 0,
                 rank: int = 0, world_size: int = 1, activation_codes: np.ndarray | None = None):
        self.root, self.split = zoo.root, split
        self.shards = [(str(s.path), s.count) for s in zoo.shards(split)]
        offsets = np.cumsum([0] + [c for _, c in self.shards])
        self.offsets = offsets
        total = int(offsets[-1])
        # Rows of the split to use (a filter, e.g. one activation of a mixed zoo); sorted = file order.
        self.rows = np.arange(total) if rows is None else np.sort(np.asarray(rows))
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size
        self.activation_codes = (np.zeros(total, np.int64) if activation_codes is None else activation_codes)
        self.epoch = 0      # epoch of the first pass; each further pass over this object is the next epoch
        self._passes = 0    # counted per copy: persistent workers each keep theirs in step
        self.skip_batches = 0  # batches of the first pass after set_epoch already trained on (mid-epoch resume)
        self._files: dict[str, h5py.File] = {}
        if len(self.rows) < world_size * (batch_size if drop_last else 1):
            raise ZooError(f"split {split!r} of {self.root} has {len(self.rows)} networks: too few for "
                           f"{world_size} process(es) x batch {batch_size}; lower data.batch_size")

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._passes, self.skip_batches = epoch, 0, 0

    # -- order ------------------------------------------------------------------------------
    def epoch_order(self) -> np.ndarray:
        rows = self.rows
        if not self.shuffle:
            return rows
        rng = np.random.default_rng([self.seed, self.epoch + max(self._passes - 1, 0)])
        units, starts = np.unique(self._chunk_ids(rows), return_index=True)  # rows are sorted: units are runs
        bounds = np.append(starts, len(rows))
        order = np.concatenate([rows[bounds[u]:bounds[u + 1]] for u in rng.permutation(len(units))])
        w = max(1, self.shuffle_buffer)
        for s in range(0, len(order), w):
            rng.shuffle(order[s:s + w])
        return order

    def rank_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, valid) of this rank for this epoch."""
        order = self.epoch_order()
        if self.drop_last:
            per_rank = len(order) // self.world_size
            mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
            n_batches = len(mine) // self.batch_size
            mine = mine[:n_batches * self.batch_size]
            return mine, np.ones(len(mine), np.float32)
        per_rank = math.ceil(len(order) / self.world_size)
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        valid = np.ones(per_rank, np.float32)
        if len(mine) < per_rank:  # pad with repeats that do not count
            valid[len(mine):] = 0.0
            mine = np.concatenate([mine, np.resize(order, per_rank - len(mine))])
        return mine, valid

    def __len__(self) -> int:
        n = len(self.rows)
        if self.drop_last:
            return (n // self.world_size) // self.batch_size
        return math.ceil(math.ceil(n / self.world_size) / self.batch_size)

    # -- reading ----------------------------------------------------------------------------
    def _file(self, path: str) -> h5py.File:
        f = self._files.get(path)
        if f is None:
            try:
                f = h5py.File(path, "r", rdcc_nbytes=16 * 2**20)
            except OSError as e:
                raise ZooError(f"shard {path} cannot be read ({e}); run `gmnae zoo verify {self.root}`") from e
            self._files[path] = f
        return f

    def _chunk_ids(self, rows: np.ndarray) -> np.ndarray:
        """The HDF5 chunk (shard, local row // CHUNK_ROWS) each split row lives in, as one integer."""
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        return shard * (1 << 40) + (rows - self.offsets[shard]) // CHUNK_ROWS

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Parameters of split rows (any order): one contiguous read per HDF5 chunk touched."""
        chunk = self._chunk_ids(rows)
        out = None
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            shard = int(c >> 40)
            local = rows[sel] - self.offsets[shard]
            lo = int(local.min())
            block = self._file(self.shards[shard][0])["params"][lo:int(local.max()) + 1]
            if out is None:
                out = np.empty((len(rows), block.shape[1]), np.float32)
            out[sel] = block[local - lo]
        return out

    def _worker_batches(self, worker: int, n_workers: int) -> list[range]:
        """The blocks of consecutive batch indices one worker yields, in order. Workers take blocks
        (about one shuffle window each) round-robin and read a block in one pass over its chunks."""
        per_block, n = max(1, self.shuffle_buffer // self.batch_size), len(self)
        return [range(f, min(f + per_block, n)) for f in range(worker * per_block, n, n_workers * per_block)]

    def delivery_order(self, n_workers: int) -> list[int]:
        """Batch indices in the order a DataLoader with `n_workers` hands them out: one batch from each
        worker in turn (an exhausted worker drops out) -- what a mid-epoch resume must skip."""
        n_workers = max(1, n_workers)  # 0: the main process alone
        queues = [[i for blk in self._worker_batches(w, n_workers) for i in blk] for w in range(n_workers)]
        order, k = [], 0
        while any(len(q) > k for q in queues):
            order += [q[k] for q in queues if len(q) > k]
            k += 1
        return order

    def __iter__(self):
        self._passes += 1
        rows, valid = self.rank_rows()
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        # the skip belongs to the epoch set last; persistent workers' later passes are later epochs
        skip = self.skip_batches if self._passes == 1 else 0
        skipped = set(self.delivery_order(n_workers)[:skip]) if skip else set()
        bs = self.batch_size
        for block in self._worker_batches(worker, n_workers):
            todo = [i for i in block if i not in skipped]
            if not todo:
                continue
            r = np.concatenate([rows[i * bs:(i + 1) * bs] for i in todo])
            v = np.concatenate([valid[i * bs:(i + 1) * bs] for i in todo])
            params = torch.from_numpy(self.read_rows(r))
            index, valid_t = torch.from_numpy(r.astype(np.int64)), torch.from_numpy(v)
            acts = torch.from_numpy(self.activation_codes[r])
            for b in range(len(todo)):
                s = slice(b * bs, (b + 1) * bs)
                yield Batch(params[s], index[s], valid_t[s], acts[s])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_files"] = {}  # handles never cross a fork/pickle
        return state
