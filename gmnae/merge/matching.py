"""Git Re-Basin weight matching (Ainsworth et al. 2023), derived from the permutation spec (docs/design.md §6).

    res = match_weights(arch, a, b, method="wm")     # a, b: [n_pairs, P] (or [P]); CPU or GPU tensors
    res.aligned                                       # b moved onto a's units: [n_pairs, P], same function as b
    res.element                                       # GroupElement g with apply_element(arch, b, g) == res.aligned

One permutation per unit group of the architecture's permutation spec (`weightspace.permutation_spec`:
one per hidden layer of a chain — conv channels or dense units —, one for layers a residual connection
ties together; `arch` may be a spec itself), identity at start. Each sweep
visits the permutations in a random order (seeded; the same order for every pair of a batch) and
replaces `P_l` by the maximiser of `<C, P>` where

    C = A_l B'_l^T  +  a_l b_l^T  +  A_{l+1}^T B'_{l+1}

is summed over every tensor axis `P_l` acts on (chain: the rows of layer l's weight (a conv weight's
input-channel and spatial axes flattened together — spatial axes are never permuted), layer l's
bias (a rank-1 term) and the columns of layer l+1's weight); `B'` has every *other* permutation
already applied. A pair stops after a sweep in which no permutation improved its objective, or
after `max_iter` sweeps.

Methods:
- `wm`        permutations only (the original algorithm);
- `wm-signed` activations with sign symmetry (odd; `weightspace.registry`): assign on |C| and take
              each unit's sign from the chosen entry, i.e. coordinate ascent over signed permutations;
- `wm-scale`  activations with positive-scale symmetry (registry): both networks are first rescaled so that every hidden unit has unit incoming
              norm (weights and bias; the inverse scale goes into the outgoing weights), then
              permutations are matched; the returned element maps b into a's scale frame
              (normalise b, permute, undo a's normalisation), so a planted permutation with
              positive scaling is undone exactly.

Everything is batched over pairs: the costs of all pairs are one `bmm`, and their assignment
problems go to one batch solver call (`solve_assignments`; the solvers, their timed choice and the
optimality certificate are in `gmnae.merge.assignment`). Solves that cannot change anything are
skipped, exactly: a layer none of whose neighbours changed since it was last solved would get the same matrix again, and an assignment
that is provably still optimal (it takes every row's maximum, or a capped Bellman-Ford finds no
improving cyclic exchange, `certify_optimal`) needs no solve. With the `jv` solver (the one that returns dual
potentials, `gmnae.merge.lap_dual`) a re-solve starts from the column duals of that layer's last solve for the
pair and its current assignment (`warm_start`): only the rows no longer tight are augmented, and the answer
is again an exact optimum. All pairs move in lockstep (one seeded
sweep order for all), each step in blocks of at most 512 pairs (CPU: the cache); every computation is
per pair, so a pair's result does not depend on its batch (bitwise).

`weight_matching_reference` (`gmnae.merge.reference_matching`) is the one-pair-at-a-time algorithm
the way the public PyTorch port of Git Re-Basin writes it; it is the baseline of the benchmark and
the cross-check of the batched code in the tests. Measured speeds: benchmarks/README.md.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..weightspace.architecture import Architecture
from ..weightspace.permutation_spec import PermutationSpec, permutation_spec
from ..weightspace.registry import MIXED, activation as activation_row, activations_with
from ..weightspace.symmetry import GroupElement, apply_element, compose, identity_element, invert
# The solvers live in gmnae/merge/assignment.py, the one-pair reference in gmnae/merge/reference_matching.py.
from .assignment import certify_optimal, choose_solver, solve_assignments, solve_assignments_with_duals
from .methods import TABLE, names

# projections of the method table (gmnae/merge/methods.py): the weight-space methods of a pair path, the matchings
METHODS = names(curve=True, needs_model=False)        # naive, wm, wm-signed, wm-scale
MATCH_METHODS = names(group="matching", inputs="2")   # wm, wm-signed, wm-scale


@dataclass
class MatchResult:
    aligned: torch.Tensor          # [n, P] b transformed onto a's units (function-equal to b)
    element: GroupElement          # apply_element(arch, b, element) == aligned
    objective: torch.Tensor        # [n] inner product <a, aligned> of the flat vectors
    sweeps: torch.Tensor           # [n] sweeps each pair ran (the last one without improvement)
    solver: str = ""


# ---------------------------------------------------------------------------------------------
# Method / activation checks
# ---------------------------------------------------------------------------------------------
_GROUP_OF_METHOD = {m.name: m.symmetry for m in TABLE if m.symmetry}  # wm-signed: sign, wm-scale: scale
_SYMMETRY_DOES = {"sign": "flips signs of hidden units", "scale": "rescales hidden units"}


def check_method(method: str, activation: str) -> None:
    """wm-signed needs an activation with sign symmetry, wm-scale one with positive-scale symmetry (registry)."""
    if method not in METHODS:
        raise ValueError(f"unknown merge method {method!r}; expected one of {', '.join(METHODS)}")
    if method not in _GROUP_OF_METHOD:
        return
    group = _GROUP_OF_METHOD[method]
    does = _SYMMETRY_DOES[group]
    if activation_row(activation).group_name != group:
        fits = ", ".join(activations_with(group))
        others = " or ".join(m for m in MATCH_METHODS if m != method)
        raise ValueError(f"{method} {does}, which is a symmetry only of {fits}, not {activation!r}; use {others}")


def default_method(activation: str) -> str:
    """The largest matching group an activation allows (registry): wm-signed, wm-scale, else wm."""
    return activation_row(activation).matching


# ---------------------------------------------------------------------------------------------
# Batched weight matching
# ---------------------------------------------------------------------------------------------
def unit_normalisation(arch, params: torch.Tensor, eps: float = 1e-12) -> GroupElement:
    """The scaling element that gives every hidden unit unit incoming norm (weights and bias).

    Group by group (feed-forward order): unit i gets `q_i = 1 / ||incoming weights and bias of i||`,
    measured after the inverse scales of the groups before it are pushed into the axes that read
    them. Dead units (zero norm) keep 1. `arch`: an Architecture or a PermutationSpec.
    """
    spec = permutation_spec(arch)
    g = identity_element(spec, params.shape[0], device=params.device, dtype=params.dtype)
    tensors = spec.unflatten(params)
    n = params.shape[0]
    for k, group in enumerate(spec.groups):
        sq = None
        for ax in group.axes:
            if not ax.incoming:
                continue
            x = tensors[ax.tensor]
            for axis, j, incoming in spec.tensor_axes(ax.tensor):
                if j < k and axis != ax.axis:  # earlier groups' factors, already decided
                    q = g.scales[j].view([n if i == 0 else (-1 if i == axis + 1 else 1) for i in range(x.dim())])
                    x = x * q if incoming else x / q
            part = x.movedim(ax.axis + 1, 1).reshape(n, group.size, -1).pow(2).sum(2)
            sq = part if sq is None else sq + part
        norm = torch.sqrt(sq)
        g.scales[k] = torch.where(norm > eps, 1.0 / norm.clamp_min(eps), torch.ones_like(norm))
    return g


# The group action: one implementation, in weightspace.symmetry (this name stays for callers of merge).
transform = apply_element


@contextmanager
def _intra_op_threads(n: int | None):
    """Temporarily run torch CPU ops on `n` threads (None: leave the setting alone)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def match_weights(arch: Architecture, a: torch.Tensor, b: torch.Tensor, method: str = "wm",
                  max_iter: int = 100, seed: int = 0, solver: str = "auto", activation: str | None = None,
                  skip_certified: bool = True, threads: int | None = 1, solver_threads: int | None = None,
                  certify_rounds: int | None = None, chunk: int | None = None,
                  workers: int | None = None, warm_start: bool = True) -> MatchResult:
    """Align every b to its a by weight matching. a, b `[n, P]` (or `[P]`); returns a `MatchResult`.

    `activation` is needed only for architectures with mixed activations ("mixed" zoos) to check that
    `wm-signed` / `wm-scale` are symmetries of the networks given.
    `threads`: torch CPU threads during the call (restored afterwards). The default 1: the tensors are
    small, and OpenMP fan-out costs more than it saves (benchmarks/README.md). None leaves torch's
    setting as it is.
    `solver_threads`: worker threads of the lapx batch solvers (default: the CPUs this process may use
    less those other work keeps busy, `_free_cpus`).
    `skip_certified` / `certify_rounds`: skip the solver for pairs whose current assignment is
    provably still optimal (row maxima, or a Bellman-Ford check capped at `certify_rounds` rounds;
    default 0: with the row-reduced lapx solvers (~19 µs per 32 x 32 SIREN problem) 8 rounds cost more
    than the ~15% of solves they save (benchmarks/README.md)).
    `chunk`: the most pairs one step's costs and solver call handle together (default 512 on CPU: larger
    blocks fall out of the cache; 8192 on GPUs). All pairs run in lockstep, so the few pairs still
    moving after the first sweeps share one block. A pair's result never depends on which other
    pairs share its batch.
    `workers`: CPU threads that match chunks of `chunk` pairs side by side (each runs single-threaded
    torch ops and solver calls, which release the GIL). Default 1 (benchmarks/README.md: two were
    not faster).
    `warm_start`: where the solver is `jv` (chosen or given), start each re-solve of a layer from the column
    duals of its last solve for that pair and the current assignment (`solve_assignments_with_duals`); the
    solution is again an exact optimum.
    """
    if solver_threads is None:
        solver_threads = _free_cpus()
    single = a.dim() == 1
    if single:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.shape != b.shape:
        raise ValueError(f"pair shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    chunk = chunk or (8192 if a.is_cuda else 512)
    starts = list(range(0, max(len(a), 1), chunk))
    workers = 1 if (workers is None or a.is_cuda) else workers
    workers = max(1, min(workers, len(starts)))

    def one(s: int, n: int) -> MatchResult:
        return _match_weights(arch, a[s:s + n], b[s:s + n], method, max_iter, seed, solver, activation,
                              skip_certified, 1 if workers > 1 else solver_threads, certify_rounds, block=chunk,
                              warm_start=warm_start)

    with _intra_op_threads(None if a.is_cuda else threads):
        if workers == 1:  # all pairs in lockstep, each step in blocks of `chunk`
            return _single(one(0, len(a)), single)
        if solver == "auto":  # choose once, before the threads race to
            for h in set(permutation_spec(arch).sizes):
                choose_solver(h, False, 1)
        from concurrent.futures import ThreadPoolExecutor

        out = torch.empty_like(b)

        def part(s: int) -> MatchResult:
            res = one(s, chunk)
            out[s:s + chunk] = res.aligned
            res.aligned = None
            return res

        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(part, starts))
    res = MatchResult(
        out,
        GroupElement([torch.cat(x) for x in zip(*(p.element.perms for p in parts))],
                     [torch.cat(x) for x in zip(*(p.element.scales for p in parts))]),
        torch.cat([p.objective for p in parts]), torch.cat([p.sweeps for p in parts]),
        ",".join(dict.fromkeys(p.solver for p in parts)))
    return _single(res, single)


def _single(res: MatchResult, single: bool) -> MatchResult:
    """The result of a call with one pair `[P]`: aligned `[P]`."""
    if single:
        res.aligned = res.aligned[0]
    return res


def _free_cpus() -> int:
    """CPUs the machine's other work leaves to the lapx solvers. On a busy shared machine a second solver
    thread waits for a core and the batch takes longer than on one; on a quiet one it is faster
    (benchmarks/README.md). The load average counts this process's own running thread."""
    from ..threads import auto_threads

    return auto_threads(running_here=1)


def _contiguous(x: torch.Tensor, block: int) -> torch.Tensor:
    """`x.contiguous()`, copied block by block of pairs: a strided copy of a whole large batch at once misses
    the cache (CNN terms of 4,096 pairs: 1.6x slower)."""
    if x.is_contiguous():
        return x
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    for s in range(0, x.shape[0], block):
        out[s:s + block] = x[s:s + block]
    return out


def _reshaped(x: torch.Tensor, shape: tuple, block: int) -> torch.Tensor:
    """`x.reshape(shape)`: a view where the strides allow, else a block-by-block copy."""
    try:
        return x.view(shape)
    except RuntimeError:
        return _contiguous(x, block).view(shape)


def _cost_terms(spec: PermutationSpec, A: list[torch.Tensor], Bt: list[torch.Tensor], k: int, block: int):
    """The terms of group k's cost `C_k = sum over its axes of A_t(axis) B'_t(axis)^T`, laid out so that every
    other group's permutation is a row gather (index_select) followed by one bmm:

    a tensor axis the group acts on becomes A `[n, h_k, (o, rest)]` @ B rows (o) `[n, o, rest, h_k]`, with `o`
    the tensor's other permuted axis (or its first other axis) first; a bias is a rank-1 term (A, B `[n, h_k]`).
    Returns [(A, B, other group or None)].
    """
    n, h = A[0].shape[0], spec.groups[k].size
    terms = []
    for ax in spec.groups[k].axes:
        t, a = ax.tensor, ax.axis
        others = [x for x in range(len(spec.shapes[t])) if x != a]
        if not others:
            terms.append((A[t], Bt[t], None))
            continue
        permuted = [(x, j) for x, j, _ in spec.tensor_axes(t) if x != a]
        if len(permuted) > 1:
            raise ValueError(f"{spec.names[t]}: weight matching handles tensors with at most two permuted axes")
        o, j = permuted[0] if permuted else (others[0], None)
        order = [o] + [x for x in others if x != o]
        a_term = _reshaped(A[t].permute(0, a + 1, *[x + 1 for x in order]), (n, h, -1), block)
        b_term = _contiguous(Bt[t].permute(0, *[x + 1 for x in order], a + 1), block)
        terms.append((a_term, b_term.reshape(n, spec.shapes[t][o], -1, h), j))
    return terms


def _match_weights(arch, a, b, method, max_iter, seed, solver, activation, skip_certified, threads,
                   certify_rounds, block: int | None = None, warm_start: bool = True) -> MatchResult:
    """The pairs a, b `[n, P]`, all in lockstep: each step (one unit group, the pairs whose cost may have
    changed) runs in blocks of at most `block` pairs (the cache), and the few pairs still moving after the
    first sweeps make one block rather than a small one per chunk of the batch."""
    spec = permutation_spec(arch)
    act = activation or getattr(arch, "activation", None)
    if method in _GROUP_OF_METHOD:  # the variants that depend on the activation
        if act in (MIXED, None):
            raise ValueError(f"{method} depends on the activation: pass activation= for a mixed-activation "
                             "architecture or a permutation spec")
        check_method(method, act)
    elif method not in METHODS:
        check_method(method, act)
    n = a.shape[0]
    block = block or max(n, 1)
    dev, dtype = a.device, a.dtype
    if method == "naive" or not spec.groups or n == 0:  # nothing to match (an empty batch: an empty result)
        g = identity_element(spec, n, device=dev, dtype=dtype)
        return MatchResult(b.clone(), g, (a * b).sum(-1), torch.zeros(n, dtype=torch.long), "none")

    norm_a = norm_b = None
    a_m, b_m = a, b
    if method == "wm-scale":
        # block by block (the cache), each block normalised and moved while it is in the cache
        a_m, b_m, norms = torch.empty_like(a), torch.empty_like(b), ([], [])
        for s in range(0, n, block):
            for x, x_m, parts in ((a, a_m, norms[0]), (b, b_m, norms[1])):
                parts.append(unit_normalisation(spec, x[s:s + block]))
                x_m[s:s + block] = apply_element(spec, x[s:s + block], parts[-1])
        norm_a, norm_b = (GroupElement([torch.cat(p) for p in zip(*(g.perms for g in parts))],
                                       [torch.cat(q) for q in zip(*(g.scales for g in parts))]) for parts in norms)
    signed = method == "wm-signed"

    H = len(spec.groups)
    perms = [torch.arange(h, device=dev).expand(n, h).clone() for h in spec.sizes]
    signs = [torch.ones(n, h, device=dev, dtype=dtype) for h in spec.sizes]
    A, Bt = spec.unflatten(a_m), spec.unflatten(b_m)
    terms = [_cost_terms(spec, A, Bt, k, block) for k in range(H)]
    neighbours = [spec.neighbours(k) for k in range(H)]

    # The pairs of a step are addressed by `idx`: an index tensor, or a slice where they are a contiguous
    # run (every block of the first sweep): slices are views, index tensors copy.
    def rows(t: torch.Tensor, idx, perm: torch.Tensor | None, sign: torch.Tensor | None):
        """t [n, r, k, h] -> pairs idx with axis r gathered by perm [n, r] and multiplied by sign: [m, r*k, h]."""
        r = t.shape[1]
        if perm is None:
            sub = pick(t, idx)
            return sub.reshape(sub.shape[0], -1, t.shape[-1])
        if isinstance(idx, slice):  # rows of the run's own pairs
            src, first = t[idx], torch.arange(idx.stop - idx.start, device=dev)
        else:
            src, first = t, idx
        m = first.numel()
        flat = (first.unsqueeze(1) * r + pick(perm, idx)).reshape(-1)
        sel = src.reshape(-1, *t.shape[2:]).index_select(0, flat).view(m, r, *t.shape[2:])
        if signed:
            sel = sel * pick(sign, idx).view(m, r, 1, 1)
        return sel.reshape(m, -1, t.shape[-1])

    def pick(t: torch.Tensor, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            return t[idx]
        return t if idx.numel() == n else t.index_select(0, idx)

    # Group l's leading cost terms that no other permutation acts on (the first layer's weights and bias of
    # a chain) are the same in every sweep: summed once for all pairs, in the same order (so the same bits).
    n_fixed = [next((i for i, (_, b_t, j) in enumerate(terms[l]) if b_t.dim() != 2 and j is not None),
                    len(terms[l])) for l in range(H)]
    fixed: dict[int, torch.Tensor] = {}

    def add_terms(c: torch.Tensor | None, l: int, idx, which) -> torch.Tensor:
        for a_t, b_t, j in which:
            if b_t.dim() == 2:  # a bias: rank-1 term
                c = (pick(a_t, idx).unsqueeze(2) * pick(b_t, idx).unsqueeze(1) if c is None
                     else c.add_(pick(a_t, idx).unsqueeze(2) * pick(b_t, idx).unsqueeze(1)))
                continue
            b_rows = rows(b_t, idx, perms[j] if j is not None else None, signs[j] if j is not None else None)
            c = torch.bmm(pick(a_t, idx), b_rows) if c is None else c.baddbmm_(pick(a_t, idx), b_rows)
        return c

    def cost(l: int, idx) -> torch.Tensor:
        """C for unit group l, for the pairs `idx`: [m, h_l, h_l]."""
        k = n_fixed[l]
        if not k or k == len(terms[l]):
            return add_terms(None, l, idx, terms[l])
        if l not in fixed:
            fixed[l] = add_terms(None, l, all_pairs, terms[l][:k])
        if isinstance(idx, slice):
            c = fixed[l][idx].clone()  # the other terms are added in place
        elif idx.numel() == n:
            c = fixed[l].clone()
        else:
            c = fixed[l].index_select(0, idx)
        return add_terms(c, l, idx, terms[l][k:])

    all_pairs = torch.arange(n, device=dev)

    def step(l: int, sel: torch.Tensor, key, progress: torch.Tensor) -> None:
        """Re-solve group l's assignment for the pairs `sel` (`key`: the same as a slice where they are a run)."""
        nonlocal chosen
        c = cost(l, key)
        full = sel.numel() == n
        cur = perms[l] if full else perms[l][sel]
        cur_val = torch.gather(c, 2, cur.unsqueeze(2)).squeeze(2)
        m = c.abs() if signed else c
        m_cur = cur_val.abs() if signed else cur_val
        row_max = m.amax(dim=2)
        if skip_certified:
            # the current assignment takes every row's maximum -> it is an optimal assignment
            todo = ~(m_cur >= row_max).all(dim=1)
            rounds = certify_rounds or 0
            if rounds > 0 and bool(solved[l]) and bool(todo.any()):
                sub = torch.nonzero(todo).squeeze(1)
                todo[sub] = ~certify_optimal(m[sub], cur[sub], max_rounds=rounds)
        else:
            todo = torch.ones(sel.numel(), dtype=torch.bool, device=dev)
        n_todo = int(todo.sum())
        if n_todo == 0 and not signed:
            stale[l, sel] = False
            solved[l] = True
            return
        if n_todo:
            if chosen is None:
                chosen = choose_solver(m.shape[1], m.is_cuda, threads)
            sub = None if n_todo == sel.numel() else torch.nonzero(todo).squeeze(1)
            if chosen == "jv" and warm_start:
                solution = solve_warm(l, m, cur, sel, sub)
            elif sub is None:
                solution = solve_assignments(m, chosen, threads, row_max=row_max)
            else:
                solution = solve_assignments(m.index_select(0, sub), chosen, threads,
                                             row_max=row_max.index_select(0, sub))
        if not signed:
            # Only the solved pairs can change: for the others the new objective equals the old one.
            at = sel if sub is None else sel[sub]
            c_s, cur_s, cur_val_s = (c, cur, cur_val) if sub is None else (c[sub], cur[sub], cur_val[sub])
            new_val = torch.gather(c_s, 2, solution.unsqueeze(2)).squeeze(2)
            old, new = cur_val_s.sum(1), new_val.sum(1)  # signs are all 1 (x * 1 == x exactly)
            tol = 1e-12 + 16 * torch.finfo(dtype).eps * new_val.abs().sum(1)
            progress[at] |= new > old + tol
            changed = (solution != cur_s).any(1)
            if full and sub is None:
                perms[l] = solution
            else:
                perms[l][at] = solution
            stale[l, sel] = False
            solved[l] = True
            for nb in neighbours[l]:
                stale[nb, at] |= changed
        else:
            old = (cur_val * signs[l][sel]).sum(1)
            new_perm = cur.clone()
            if n_todo:
                if sub is None:
                    new_perm = solution
                else:
                    new_perm[sub] = solution
            new_val = torch.gather(c, 2, new_perm.unsqueeze(2)).squeeze(2)
            new_sign = torch.where(new_val < 0, -1.0, 1.0).to(dtype)
            new = (new_val * new_sign).sum(1)
            tol = 1e-12 + 16 * torch.finfo(dtype).eps * new_val.abs().sum(1)
            progress[sel] |= new > old + tol
            changed = (new_perm != cur).any(1) | (new_sign != signs[l][sel]).any(1)
            perms[l][sel] = new_perm
            signs[l][sel] = new_sign
            stale[l, sel] = False
            solved[l] = True
            for nb in neighbours[l]:
                stale[nb, sel] |= changed

    # The jv solver's column duals of each group's last solve per pair (`warm_start`): the next solve of that
    # group starts from them. A pair never solved has v = 0 (with its current assignment: the row-maximum start).
    duals: list[torch.Tensor | None] = [None] * H
    has_duals = torch.zeros(H, n, dtype=torch.bool, device=dev)

    def solve_warm(l: int, m: torch.Tensor, cur: torch.Tensor, sel: torch.Tensor, sub) -> torch.Tensor:
        at = sel if sub is None else sel[sub]
        if sub is not None:
            m, cur = m.index_select(0, sub), cur.index_select(0, sub)
        if duals[l] is None:
            duals[l] = torch.zeros(n, m.shape[1], dtype=torch.float64, device=dev)
        if bool(has_duals[l, at].any()):
            solution, _, v = solve_assignments_with_duals(m, threads, cur, duals[l][at])
        else:  # a cold solve (every pair's first)
            solution, _, v = solve_assignments_with_duals(m, threads)
        duals[l][at] = v
        has_duals[l, at] = True
        return solution

    gen = torch.Generator().manual_seed(seed)
    active = torch.ones(n, dtype=torch.bool, device=dev)
    sweeps = torch.zeros(n, dtype=torch.long, device=dev)
    # stale[l]: a neighbour of layer l changed since P_l was last solved, so C_l may differ from the
    # matrix P_l was optimal for. A fresh (not stale) layer would get the same C and the same answer.
    stale = torch.ones(H, n, dtype=torch.bool, device=dev)
    solved = [False] * H  # certificates pay off only once a layer's assignment has been optimised
    chosen = solver if solver != "auto" else None
    for _ in range(max_iter):
        idx = torch.nonzero(active).squeeze(1)
        if idx.numel() == 0:
            break
        sweeps[idx] += 1
        progress = torch.zeros(n, dtype=torch.bool, device=dev)
        for l in torch.randperm(H, generator=gen).tolist():
            todo_pairs = idx[stale[l, idx]] if skip_certified else idx
            for first in range(0, todo_pairs.numel(), block):
                sel = todo_pairs[first:first + block]
                lo, hi = int(sel[0]), int(sel[-1]) + 1
                step(l, sel, slice(lo, hi) if hi - lo == sel.numel() and sel.numel() < n else sel, progress)
        active[idx] = progress[idx]

    g = GroupElement([p.clone() for p in perms], [s.clone() for s in signs])
    if method == "wm-scale":
        g = compose(compose(norm_b, g), invert(norm_a))
    # block by block, each written into the output while its rows are in the cache (2x faster than whole)
    aligned = torch.empty_like(b)
    for s in range(0, n, block):
        part = GroupElement([p[s:s + block] for p in g.perms], [q[s:s + block] for q in g.scales])
        apply_element(spec, b[s:s + block], part, out=aligned[s:s + block])
    objective = torch.cat([(a[s:s + block] * aligned[s:s + block]).sum(-1) for s in range(0, n, block)])
    return MatchResult(aligned, g, objective, sweeps.cpu(), chosen or "certified")


def align(arch: Architecture, a: torch.Tensor, b: torch.Tensor, method: str = "wm", **kw) -> torch.Tensor:
    """Just the aligned b (`naive` returns b unchanged)."""
    return match_weights(arch, a, b, method, **kw).aligned
