"""Zoos as training data: the Lightning `ZooDataModule` (`datamodule.py`), the resumable shuffled stream over
HDF5 shards it reads from (`shard_stream.py`) and the checks that a zoo on disk matches the dataset config
before anything trains (`zoo_checks.py`). Zoos themselves are built and read by `gmnae.zoo`."""
