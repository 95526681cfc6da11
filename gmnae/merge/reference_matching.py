"""Weight matching one pair at a time, the way the public PyTorch port of Git Re-Basin writes it (the spec
as named axes, scipy per step): the baseline of the merge benchmark and the cross-check of the batched
code in `gmnae.merge.matching` in the tests.
"""
from __future__ import annotations

import torch

from ..weightspace.permutation_spec import permutation_spec
from ..weightspace.symmetry import GroupElement

def reference_axes(arch) -> tuple[dict[str, tuple], dict[str, list[tuple[str, int]]]]:
    """The permutation spec in Git Re-Basin's form: (axes_to_perm, perm_to_axes) with groups named "P_k"."""
    spec = permutation_spec(arch)
    axes_to_perm = {name: tuple(None for _ in shape) for name, shape in zip(spec.names, spec.shapes)}
    perm_to_axes: dict[str, list[tuple[str, int]]] = {}
    for k, group in enumerate(spec.groups):
        for ax in group.axes:
            name = spec.names[ax.tensor]
            axes = list(axes_to_perm[name])
            axes[ax.axis] = f"P_{k}"
            axes_to_perm[name] = tuple(axes)
            perm_to_axes.setdefault(f"P_{k}", []).append((name, ax.axis))
    return axes_to_perm, perm_to_axes


def weight_matching_reference(arch, a: torch.Tensor, b: torch.Tensor, max_iter: int = 100,
                              seed: int = 0) -> dict[str, torch.Tensor]:
    """One pair `[P]`, scipy per step: returns {"P_k": perm}. `apply_element` with these perms aligns b."""
    from scipy.optimize import linear_sum_assignment

    spec = permutation_spec(arch)
    axes_to_perm, perm_to_axes = reference_axes(spec)
    params_a = dict(zip(spec.names, (t[0] for t in spec.unflatten(a.unsqueeze(0)))))
    params_b = dict(zip(spec.names, (t[0] for t in spec.unflatten(b.unsqueeze(0)))))
    perm_sizes = {p: params_a[axes[0][0]].shape[axes[0][1]] for p, axes in perm_to_axes.items()}
    perm = {p: torch.arange(n) for p, n in perm_sizes.items()}
    perm_names = list(perm)

    def get_permuted_param(k, perm, except_axis=None):
        w = params_b[k]
        for axis, p in enumerate(axes_to_perm[k]):
            if axis == except_axis or p is None:
                continue
            w = torch.index_select(w, axis, perm[p].int())
        return w

    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_iter):
        progress = False
        for p_ix in torch.randperm(len(perm_names), generator=gen):
            p = perm_names[p_ix]
            n = perm_sizes[p]
            A = torch.zeros((n, n), dtype=a.dtype)
            for wk, axis in perm_to_axes[p]:
                w_a = params_a[wk]
                w_b = get_permuted_param(wk, perm, except_axis=axis)
                w_a = torch.moveaxis(w_a, axis, 0).reshape((n, -1))
                w_b = torch.moveaxis(w_b, axis, 0).reshape((n, -1))
                A += w_a @ w_b.T
            ri, ci = linear_sum_assignment(A.detach().numpy(), maximize=True)
            assert (torch.tensor(ri) == torch.arange(len(ri))).all()
            old_l = torch.einsum("ij,ij->i", A, torch.eye(n, dtype=A.dtype)[perm[p].long()]).sum()
            new_l = torch.einsum("ij,ij->i", A, torch.eye(n, dtype=A.dtype)[ci, :]).sum()
            progress = progress or bool(new_l > old_l + 1e-12)
            perm[p] = torch.tensor(ci)
        if not progress:
            break
    return perm


def reference_element(arch, perm: dict[str, torch.Tensor], dtype=torch.float32) -> GroupElement:
    """The GroupElement of a reference result (one pair)."""
    sizes = permutation_spec(arch).sizes
    return GroupElement([perm[f"P_{k}"].long().unsqueeze(0) for k in range(len(sizes))],
                        [torch.ones(1, h, dtype=dtype) for h in sizes])
