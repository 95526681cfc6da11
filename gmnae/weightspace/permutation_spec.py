"""Which tensor axes each hidden-unit group acts on: the one description of the weight-space symmetries.

A network's parameters are a list of tensors (the flat layout: weight 0, bias 0, weight 1, ...). A
*unit group* is a set of hidden units that share one permutation (and one per-unit factor): it acts
on every tensor axis that indexes those units — the rows of the weights and biases that compute
them (*incoming*: multiplied by the unit's factor q) and the columns of the weights that read them
(*outgoing*: divided by q). `weightspace.symmetry` applies group elements, weight matching builds
its assignment costs, the graph layout types its hidden nodes and the pair sets plant transforms,
all from this one description.

    spec = permutation_spec(arch)          # a feed-forward chain: one group per hidden layer
    spec.groups[0].axes                    # (rows of weight 0, rows of bias 0, columns of weight 1)
    res = spec.tied(0, 1)                  # a residual connection: hidden layers 0 and 1 share units

Git Re-Basin (Ainsworth et al. 2023) calls this a PermutationSpec; there it is written by hand per model.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import prod

import torch


@dataclass(frozen=True)
class TensorAxis:
    tensor: int     # position in the flat layout's tensor list
    axis: int       # axis of that tensor (without the batch axis)
    incoming: bool  # True: the units' own weights/biases (x q); False: weights that read the units (/ q)


@dataclass(frozen=True)
class UnitGroup:
    size: int
    axes: tuple[TensorAxis, ...]  # in the order matching sums its cost terms


@dataclass(frozen=True)
class PermutationSpec:
    names: tuple[str, ...]               # tensor names, flat-layout order
    shapes: tuple[tuple[int, ...], ...]  # tensor shapes (no batch axis)
    groups: tuple[UnitGroup, ...]

    def __post_init__(self):
        seen = set()
        for k, g in enumerate(self.groups):
            for ax in g.axes:
                key = (ax.tensor, ax.axis)
                if key in seen:
                    raise ValueError(f"axis {ax.axis} of {self.names[ax.tensor]} is claimed by two unit groups")
                seen.add(key)
                if self.shapes[ax.tensor][ax.axis] != g.size:
                    raise ValueError(f"unit group {k} has {g.size} units but axis {ax.axis} of "
                                     f"{self.names[ax.tensor]} has {self.shapes[ax.tensor][ax.axis]}")

    # ---- derived facts ------------------------------------------------------------------
    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(g.size for g in self.groups)

    @property
    def n_params(self) -> int:
        return sum(prod(s) for s in self.shapes)

    def offsets(self) -> list[tuple[int, int]]:
        """(start, end) of every tensor in the flat vector."""
        out, pos = [], 0
        for s in self.shapes:
            out.append((pos, pos + prod(s)))
            pos += prod(s)
        return out

    @cached_property
    def _by_tensor(self) -> tuple[tuple[tuple[int, int, bool], ...], ...]:
        return tuple(tuple(sorted((ax.axis, k, ax.incoming) for k, g in enumerate(self.groups) for ax in g.axes
                                  if ax.tensor == t)) for t in range(len(self.shapes)))

    def tensor_axes(self, tensor: int) -> tuple[tuple[int, int, bool], ...]:
        """(axis, group, incoming) of every permuted axis of one tensor, by axis."""
        return self._by_tensor[tensor]

    def group_of_axis(self, tensor: int, axis: int) -> int | None:
        for a, k, _ in self.tensor_axes(tensor):
            if a == axis:
                return k
        return None

    def neighbours(self, k: int) -> tuple[int, ...]:
        """Groups acting on another axis of a tensor that group k acts on (k itself for a tensor it acts on twice):
        the groups whose matching costs change when k's permutation does."""
        out = set()
        for ax in self.groups[k].axes:
            out |= {j for a, j, _ in self.tensor_axes(ax.tensor) if a != ax.axis}
        return tuple(sorted(out))

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """`[n, P]` -> every tensor `[n, *shape]` (views where the layout allows)."""
        if flat.shape[-1] != self.n_params:
            raise ValueError(f"parameter vector has {flat.shape[-1]} entries but the spec needs {self.n_params}")
        return [flat[:, s:e].reshape(flat.shape[0], *shape) for (s, e), shape in zip(self.offsets(), self.shapes)]

    # ---- building ---------------------------------------------------------------------------
    def tied(self, *groups: int) -> "PermutationSpec":
        """The spec with `groups` merged into one (their units permuted together): a residual connection
        adds one hidden layer's output to another's, so both must move alike. The merged group takes the
        first one's place; the others are removed."""
        first, rest = groups[0], set(groups[1:])
        sizes = {self.groups[k].size for k in groups}
        if len(sizes) != 1:
            raise ValueError(f"cannot tie unit groups {groups} of different sizes {sorted(sizes)}")
        merged = UnitGroup(self.groups[first].size, tuple(ax for k in groups for ax in self.groups[k].axes))
        new = [merged if k == first else g for k, g in enumerate(self.groups) if k not in rest]
        return PermutationSpec(self.names, self.shapes, tuple(new))


@lru_cache(maxsize=64)
def _chain_spec(arch) -> PermutationSpec:
    names = tuple(k for k, _ in arch.param_shapes)
    shapes = tuple(tuple(s) for _, s in arch.param_shapes)
    groups = []
    for l, n in enumerate(arch.hidden_sizes):
        # rows of weight l, rows of bias l, columns of weight l+1 (the order matching sums its terms in)
        groups.append(UnitGroup(n, (TensorAxis(2 * l, 0, True), TensorAxis(2 * l + 1, 0, True),
                                    TensorAxis(2 * l + 2, 1, False))))
    return PermutationSpec(names, shapes, tuple(groups))


def permutation_spec(arch) -> PermutationSpec:
    """The spec of an `Architecture` (a feed-forward chain: one group per hidden layer); a spec passes through."""
    return arch if isinstance(arch, PermutationSpec) else _chain_spec(arch)
