"""Scatter-sum shim: `torch_scatter` when it is importable, native `index_add_` otherwise.

    from gmnae.nn.scatter import scatter_sum, scatter_backend
    out = scatter_sum(src, index, dim_size)          # rows of src [E, ...] summed into out [dim_size, ...]
    with scatter_backend("native"): ...              # force a backend (tests, benchmarks)

`torch_scatter` is an optional extra (source build only, docs/design.md §8); for sums it is no faster than
`index_add_`, so the native path is the default fallback, not a degraded mode.
"""
from __future__ import annotations

import contextlib

import torch

try:  # optional extra
    import torch_scatter as _torch_scatter
except Exception:  # noqa: BLE001 - any import failure (missing, ABI mismatch) means "not available"
    _torch_scatter = None

BACKENDS = ("auto", "native", "torch_scatter")
_backend = "auto"


def has_torch_scatter() -> bool:
    return _torch_scatter is not None


def current_backend() -> str:
    """The backend scatter_sum uses now: "native" or "torch_scatter"."""
    if _backend == "auto":
        return "torch_scatter" if _torch_scatter is not None else "native"
    return _backend


def set_scatter_backend(name: str) -> None:
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown scatter backend {name!r}; expected one of {BACKENDS}")
    if name == "torch_scatter" and _torch_scatter is None:
        raise RuntimeError("torch_scatter is not installed (optional extra: `make scatter`)")
    _backend = name


@contextlib.contextmanager
def scatter_backend(name: str):
    """Temporarily force a backend: "auto", "native" or "torch_scatter"."""
    global _backend
    old = _backend
    set_scatter_backend(name)
    try:
        yield
    finally:
        _backend = old


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of `src [E, ...]` into `[dim_size, ...]` by `index [E]` (dimension 0)."""
    if current_backend() == "torch_scatter":
        return _torch_scatter.scatter(src, index, dim=0, dim_size=dim_size, reduce="sum")
    out = src.new_zeros((dim_size,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)
