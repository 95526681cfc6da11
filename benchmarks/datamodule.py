"""DataModule delivery rate with 0, 1 and 2 workers, next to the training step's consumption rate."""
from __future__ import annotations

import shutil
import time

from torch.utils.data import DataLoader

from gmnae.data.shard_stream import ShardStream, _collate_identity
from gmnae.weightspace import Architecture
from gmnae.zoo.format import Zoo
from ._util import synthetic_zoo


def run(quick: bool = False) -> dict[str, float]:
    out = {}
    for family, arch, batch in (("inr", Architecture.siren(), 128), ("cnn", Architecture.small_cnn("relu"), 64)):
        n = 3000 if quick else 30000
        root = synthetic_zoo(n, arch)
        try:
            zoo = Zoo(root)
            for workers in (0, 1, 2):
                stream = ShardStream(zoo, "train", batch, shuffle=True)
                loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_collate_identity,
                                    persistent_workers=False)
                t0 = time.perf_counter()
                rows = sum(len(b) for b in loader)
                out[f"datamodule.{family}.workers{workers}.networks_per_s"] = rows / (time.perf_counter() - t0)
        finally:
            shutil.rmtree(root.parent, ignore_errors=True)
    return out
