"""Seeded, reproducible pair sets for merging experiments (docs/design.md §6).

- Orbit pairs: a network `a` and `b = g·a + σ·ε`, `g` a random symmetry transform (the activation's
  orbit symmetries in `weightspace.registry`: P, D, PD with sign symmetry, P, S, PS with positive-scale
  symmetry), acting on the unit groups of the permutation spec, `ε` standard Gaussian noise (σ = 0.005 by
  default, the paper's protocol). Weight matching should bring `b` back onto `a`.
- Independent pairs: two networks trained separately on the same task — for INR zoos two INRs of
  the same image from different seeds (`image_index` metadata), for CNN zoos two networks of the
  zoo's task with the same activation. Pairs are disjoint (no network is used twice).

    pairs = zoo_pairs(zoo, "test", "orbit-PD", n_pairs=100, seed=0)
    pairs = zoo_pairs(zoo, "test", "independent", activation="relu")

The same (zoo split, pair type, n_pairs, seed, σ) always gives the same pairs. An evaluation reads its
split once (`SplitNetworks`) and draws every pair type from it (`evaluation_pair_sets`).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from ..weightspace.architecture import Architecture
from ..weightspace.registry import activation as activation_row, code_of
from ..weightspace.symmetry import GroupElement, apply_element, random_element

DEFAULT_SIGMA = 0.005


@dataclass
class PairSet:
    pair_type: str                   # "orbit-P" / "orbit-PD" / ... / "independent"
    arch: Architecture               # with the pairs' activation set (never "mixed")
    a: torch.Tensor                  # [n, P]
    b: torch.Tensor                  # [n, P]
    index_a: np.ndarray              # rows of a in the zoo split
    index_b: np.ndarray              # rows of b (orbit pairs: the same as index_a)
    element: GroupElement | None = None  # orbit pairs: the planted transform (b = g·a + noise)
    sigma: float = 0.0

    def __len__(self) -> int:
        return self.a.shape[0]

    @property
    def activation(self) -> str:
        return self.arch.activation


def orbit_symmetries(activation: str) -> tuple[str, ...]:
    """The symmetries orbit pairs of an activation are drawn with (registry): P, D, PD (sign symmetry) or
    P, S, PS (scale); pair type `orbit-<symmetries>`."""
    return activation_row(activation).orbit_symmetries


def _rng(seed: int, *salt) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(str(s).encode()) for s in salt])


def orbit_pairs(arch: Architecture, params: torch.Tensor, symmetries: str, sigma: float = DEFAULT_SIGMA,
                seed: int = 0, indices: np.ndarray | None = None) -> PairSet:
    """b = g·a + σ·ε for every row of `params` `[n, P]` (rows `indices` of their split, for bookkeeping)."""
    rng = _rng(seed, "orbit", symmetries)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    g = random_element(arch, params.shape[0], symmetries, gen, dtype=params.dtype, device=params.device)
    noise = torch.randn(params.shape, generator=gen, dtype=torch.float64).to(params.device, params.dtype)
    b = apply_element(arch, params, g) + sigma * noise
    idx = np.arange(len(params)) if indices is None else np.asarray(indices)
    return PairSet(f"orbit-{symmetries}", arch, params, b, idx, idx.copy(), g, sigma)


def independent_indices(meta: dict[str, np.ndarray], activations: list[str] | None, n_pairs: int | None,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint index pairs of separately trained networks of the same task (and activation).

    Groups: same `image_index` when the metadata has it (INR zoos), else same activation (CNN zoos).
    Within a group the members are shuffled and paired consecutively; then `n_pairs` pairs are drawn.
    """
    rng = _rng(seed, "independent")
    n = len(next(iter(meta.values())))
    if "image_index" in meta:
        keys = np.asarray(meta["image_index"]).astype(str)
        if activations is not None:
            keys = np.char.add(keys, np.asarray(activations, dtype=str))
    elif activations is not None:
        keys = np.asarray(activations, dtype=str)
    else:
        keys = np.zeros(n, dtype=str)
    ia, ib = [], []
    for key in np.unique(keys):
        members = np.nonzero(keys == key)[0]
        members = members[rng.permutation(len(members))]
        half = len(members) // 2
        ia.append(members[:half])
        ib.append(members[half:2 * half])
    ia, ib = np.concatenate(ia), np.concatenate(ib)
    order = rng.permutation(len(ia))
    if n_pairs is not None:
        order = order[:n_pairs]
    return ia[order], ib[order]


@dataclass
class SplitNetworks:
    """One zoo split in memory -- parameters, metadata and each network's activation code -- so that every pair
    type of an evaluation is drawn from a single read of the split."""

    name: str                        # the zoo's name, for messages
    arch: Architecture               # the zoo's (activation "mixed" when its networks differ)
    params: np.ndarray               # [N, P]
    meta: dict[str, np.ndarray]      # per-network metadata columns
    codes: np.ndarray                # [N] activation codes (weightspace/registry.py)

    @staticmethod
    def read(zoo, split: str) -> "SplitNetworks":
        meta = zoo.read_meta(split)
        params = zoo.read_params(split)
        names = meta["activation"] if zoo.arch.activation == "mixed" else [zoo.arch.activation] * len(params)
        codes = np.array([code_of(str(a)) for a in names], dtype=np.int64)
        return SplitNetworks(zoo.name, zoo.arch, params, meta, codes)


def zoo_pairs(zoo, split: str, pair_type: str, n_pairs: int | None = 100, seed: int = 0, sigma: float = DEFAULT_SIGMA,
              activation: str | None = None, dtype=torch.float32) -> PairSet:
    """A pair set from a zoo split. `pair_type`: "independent" or "orbit-<P|D|S|PD|PS>".

    Mixed-activation zoos need `activation` (pairs never mix activations). Fewer pairs come back
    when the split has fewer.
    """
    return split_pairs(SplitNetworks.read(zoo, split), pair_type, n_pairs, seed, sigma, activation, dtype)


def split_pairs(networks: SplitNetworks, pair_type: str, n_pairs: int | None = 100, seed: int = 0,
                sigma: float = DEFAULT_SIGMA, activation: str | None = None, dtype=torch.float32) -> PairSet:
    """`zoo_pairs` on a split already in memory."""
    arch = networks.arch
    if arch.activation == "mixed":
        if activation is None:
            raise ValueError(f"zoo {networks.name} mixes activations: choose one with activation=")
        arch = arch.with_activation(activation)
    elif activation is not None and activation != arch.activation:
        raise ValueError(f"zoo {networks.name} has only {arch.activation} networks, not {activation}")
    params = networks.params
    allowed = np.arange(len(params)) if activation is None else np.nonzero(networks.codes == code_of(activation))[0]
    if pair_type == "independent":
        meta = {k: v[allowed] for k, v in networks.meta.items()}
        ia, ib = independent_indices(meta, None, n_pairs, seed)
        ia, ib = allowed[ia], allowed[ib]
        a = torch.from_numpy(params[ia]).to(dtype)
        b = torch.from_numpy(params[ib]).to(dtype)
        return PairSet("independent", arch, a, b, ia, ib)
    if not pair_type.startswith("orbit-"):
        raise ValueError(f"unknown pair type {pair_type!r}: use independent or orbit-<symmetries> (e.g. orbit-PD)")
    rng = _rng(seed, "orbit-rows", pair_type)
    rows = allowed[rng.permutation(len(allowed))]
    if n_pairs is not None:
        rows = rows[:n_pairs]
    return orbit_pairs(arch, torch.from_numpy(params[rows]).to(dtype), pair_type[len("orbit-"):], sigma, seed, rows)


def evaluation_pair_types(activation: str) -> list[str]:
    """The pair types the merging evaluation draws for one activation: its orbit types, then independent."""
    return [f"orbit-{s}" for s in orbit_symmetries(activation)] + ["independent"]


def evaluation_pair_sets(networks: SplitNetworks, pairs_per_type: int, seed: int = 0, sigma: float = DEFAULT_SIGMA,
                         activation: str | None = None) -> dict[str, PairSet]:
    """Every pair type of every activation of the split (`activation`: that one only), keyed by pair type, prefixed
    `<activation>:` when the split mixes activations; empty sets left out."""
    from ..weightspace.registry import by_code

    acts = sorted({by_code(int(c)).name for c in np.unique(networks.codes)}) if activation is None else [activation]
    out: dict[str, PairSet] = {}
    for act in acts:
        prefix = f"{act}:" if len(acts) > 1 else ""
        for pair_type in evaluation_pair_types(act):
            ps = split_pairs(networks, pair_type, pairs_per_type, seed, sigma,
                             act if networks.arch.activation == "mixed" else None)
            if len(ps):
                out[prefix + pair_type] = ps
    return out
