"""`gmnae zoo verify DIR`: recompute every shard's checksum, check shapes, reject NaN/Inf parameters."""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import ZooError
from .format import Zoo, sha256_file


def verify_zoo(root, check_finite: bool = True, block_rows: int = 4096) -> dict:
    """Raise `ZooError` naming the shard (and row) on the first problem; return counts when all is well."""
    zoo = Zoo(root)
    counts = {}
    for split in zoo.splits:
        total = 0
        for shard in zoo.shards(split):
            if not shard.path.exists():
                raise ZooError(f"shard {shard.path} listed in the manifest is missing; rebuild or re-import the zoo")
            digest = sha256_file(shard.path)
            if digest != shard.sha256:
                raise ZooError(f"shard {shard.path} is corrupt: sha256 {digest[:12]}… != manifest {shard.sha256[:12]}…; "
                               "rebuild or re-import the zoo")
            with h5py.File(shard.path, "r") as f:
                ds = f["params"]
                if ds.shape != (shard.count, zoo.arch.n_params):
                    raise ZooError(f"shard {shard.path} holds params {ds.shape}, manifest says "
                                   f"({shard.count}, {zoo.arch.n_params})")
                if check_finite:
                    for start in range(0, shard.count, block_rows):
                        block = ds[start:start + block_rows]
                        bad = ~np.isfinite(block).all(axis=1)
                        if bad.any():
                            row = start + int(np.argmax(bad))
                            raise ZooError(f"shard {shard.path} row {row} has NaN/Inf parameters; "
                                           "drop that network or rebuild the zoo")
            total += shard.count
        counts[split] = total
    return counts
