"""Data files that ship inside the package (origin and licences in README.md next to this file)."""
from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
# Row order behind the published CIFAR-10 Small CNN Zoo splits (NFN, MIT licence).
SMALL_CNN_ZOO_CIFAR10_ORDER = DATA_DIR / "small-cnn-zoo-cifar10-order.csv"
