"""Streaming shards: every network once per epoch across ranks and workers, chunk-aware shuffling."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gmnae.data.shard_stream import ShardStream
from gmnae.weightspace import Architecture
from gmnae.zoo import Zoo, ZooWriter


@pytest.fixture(scope="module")
def toy_zoo(tmp_path_factory):
    """Row i of the train split holds the value i everywhere, in shards of 150 rows."""
    root = tmp_path_factory.mktemp("toy")
    arch = Architecture.siren()
    n = 700
    params = np.repeat(np.arange(n, dtype=np.float32)[:, None], arch.n_params, axis=1)
    with ZooWriter(root, "toy", arch, max_shard_bytes=150 * arch.n_params * 4) as w:
        w.add("train", params, {"id": np.arange(n)})
        w.add("val", params[:103], {"id": np.arange(103)})
    return Zoo(root)


def _collect(stream, workers=0):
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=lambda x: x)
    batches = list(loader)
    for b in batches:  # params really are the rows named by index
        assert torch.equal(b.params[:, 0].long(), b.index)
    return batches


@pytest.mark.parametrize("workers", [0, 2])
def test_train_epoch_partitions_rows_across_ranks(toy_zoo, workers):
    seen, counts = [], []
    for rank in range(3):
        s = ShardStream(toy_zoo, "train", 16, rank=rank, world_size=3, shuffle=True, shuffle_buffer=64)
        batches = _collect(s, workers)
        counts.append(len(batches))
        assert len(batches) == len(s)
        seen += [i for b in batches for i in b.index.tolist()]
    assert len(set(counts)) == 1  # every rank the same number of steps: DDP never waits
    assert len(seen) == len(set(seen))  # no network twice in an epoch
    assert len(seen) == (700 // 3) // 16 * 16 * 3


def test_eval_counts_every_row_exactly_once(toy_zoo):
    valid_rows = []
    for rank in range(2):
        s = ShardStream(toy_zoo, "val", 16, rank=rank, world_size=2, shuffle=False, drop_last=False)
        for b in _collect(s):
            valid_rows += b.index[b.valid > 0].tolist()
    assert sorted(valid_rows) == list(range(103))


def test_shuffle_is_chunk_aware_and_changes_per_epoch(toy_zoo):
    s = ShardStream(toy_zoo, "train", 700, shuffle=True, shuffle_buffer=64, drop_last=False)
    first = s.epoch_order()
    s._passes = 2
    second = s.epoch_order()
    assert sorted(first.tolist()) == list(range(700)) and not np.array_equal(first, second)
    # A bounded window of 64 rows draws from a few HDF5 chunks only: reads stay local. (Shards of
    # 150 rows hold chunks of 64, 64 and 22 rows, so a window spans at most 4 chunks.)
    chunks = s._chunk_ids(first)
    per_window = [len(set(chunks[i:i + 64].tolist())) for i in range(0, 640, 64)]
    assert max(per_window) <= 4
    shuffled_fully = [len(set(c)) for c in np.array_split(s._chunk_ids(np.random.default_rng(0).permutation(700)), 10)]
    assert min(shuffled_fully) > 4  # what an unaware shuffle would touch


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_mid_epoch_resume_skips_exactly_the_batches_already_delivered(toy_zoo, workers):
    s = ShardStream(toy_zoo, "train", 16, shuffle=True, shuffle_buffer=48, seed=3)
    s.set_epoch(4)
    full = [b.index.tolist() for b in _collect(s, workers)]
    # the model of the DataLoader's round-robin over workers matches what it really hands out
    rows, _ = s.rank_rows()
    assert full == [rows[i * 16:(i + 1) * 16].tolist() for i in s.delivery_order(workers)]
    for k in (1, 7, len(full) - 1):
        s.set_epoch(4)
        s.skip_batches = k
        rest = [b.index.tolist() for b in _collect(s, workers)]
        assert sorted(map(tuple, rest)) == sorted(map(tuple, full[k:]))  # nothing twice, nothing lost
    s.set_epoch(4)
    assert [b.index.tolist() for b in _collect(s, workers)] == full  # a new start of the epoch skips nothing
    s.set_epoch(4)
    s.skip_batches = 5
    assert len(list(s)) == len(full) - 5 and len(list(s)) == len(full)  # the next epoch's pass skips nothing


def test_no_file_handles_before_workers_fork(toy_zoo):
    s = ShardStream(toy_zoo, "train", 16)
    assert s._files == {}
    next(iter(s))
    assert s._files and s.__getstate__()["_files"] == {}
