"""Zoos: the catalogue (which zoos there are; `get` opens one by name), the HDF5 shard format (write, read,
verify), the forge that trains built-in zoos, importers."""
from .catalogue import get
from .format import MANIFEST, Zoo, ZooWriter, missing_zoo_hint, open_zoo
from .verify import verify_zoo

__all__ = ["MANIFEST", "Zoo", "ZooWriter", "get", "missing_zoo_hint", "open_zoo", "verify_zoo"]
