"""The merge methods: one row per name, and every list of methods in gmnae is a projection of this table.

    from gmnae.merge.methods import TABLE, method, names
    method("ae").needs_model                  # True
    names(group="matching", inputs="2")       # ("wm", "wm-signed", "wm-scale")

One meaning per name, the same in `gmnae merge` (weights w_k of K inputs; two inputs: (1 − α, α)) and along the
interpolation curves of `gmnae evaluate` and the training callback (the path between networks A and B: at λ, the
merge with weights (1 − λ, λ)), and in the K-way table (`gmnae evaluate --kway`, gmnae/evaluation/kway_eval.py).

| name         | inputs | model | group       | meaning                                                              |
|--------------|--------|-------|-------------|----------------------------------------------------------------------|
| naive        | K      | no    | baseline    | Σ w_k θ_k: the weighted mean of the raw weights                      |
| wm           | 2      | no    | matching    | permutations align B to A (Git Re-Basin weight matching), then mean  |
| wm-signed    | 2      | no    | matching    | signed permutations (odd activations: sine, tanh), then mean         |
| wm-scale     | 2      | no    | matching    | permutations after unit-norm rescaling (ReLU), then mean             |
| mergemany    | K      | no    | matching    | MergeMany: the K networks aligned to each other, then mean           |
| ae           | K      | yes   | autoencoder | dec(Σ w_k enc θ_k): decode the weighted mean latent                  |
| ae-endpoints | K      | yes   | autoencoder | Σ w_k dec(enc θ_k): the weighted mean of the decoded networks        |

Names stored by older runs: before this table, `gmnae evaluate` and the training callback called the line between
the decoded endpoints `ae` and the decoded latent line `ae-latent` (so `ae` meant what is now `ae-endpoints`).
An evaluation that holds `ae-latent` is one of those; `current_names` / `current_rows` / `current_columns` read
its names as today's (barriers.csv, summary.json, metrics.csv columns `interp/<pair type>/<method>/…`,
reconstruction keys `midpoint_<method>…`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

GROUPS = ("baseline", "matching", "autoencoder")


@dataclass(frozen=True)
class MergeMethod:
    name: str
    inputs: str             # "2": exactly two networks (B aligned to A); "K": any number
    needs_model: bool       # needs a trained autoencoder (gmnae merge --model; evaluate's checkpoint)
    group: str              # one of GROUPS: weight-space baseline, weight matching, autoencoder
    meaning: str            # one line: what the merged network is (the --method help text and the docs)
    curve: bool             # drawn on the pair curves of gmnae evaluate / the training callback
    color: str              # the report's plot colour
    style: tuple = field(default=())  # extra matplotlib line style of the report, as (key, value) pairs
    symmetry: str = ""      # the symmetry beyond permutations it aligns (weightspace.registry group name: sign, scale)

    @property
    def plot_style(self) -> dict:
        return dict(self.style)


TABLE: tuple[MergeMethod, ...] = (
    MergeMethod("naive", "K", False, "baseline", "the weighted mean of the raw weights, no alignment", True,
                "#7f7f7f", (("ls", ":"),)),
    MergeMethod("wm", "2", False, "matching", "permutations align B to A (Git Re-Basin weight matching), then the "
                "weighted mean", True, "#1f77b4"),
    MergeMethod("wm-signed", "2", False, "matching", "signed permutations align B to A (odd activations), then the "
                "weighted mean", True, "#17becf", symmetry="sign"),
    MergeMethod("wm-scale", "2", False, "matching", "permutations after unit-norm rescaling align B to A (positively "
                "homogeneous activations), then the weighted mean", True, "#17becf", symmetry="scale"),
    MergeMethod("mergemany", "K", False, "matching", "MergeMany: the K networks aligned to each other (--match: "
                "the variant), then the weighted mean", False, "#9467bd"),
    # ae and ae-endpoints often lie on top of each other: a dashed, marked line keeps the one below visible
    MergeMethod("ae", "K", True, "autoencoder", "decode the weighted mean latent: dec(Σ w_k enc(θ_k))", True,
                "#ff7f0e", (("ls", "--"), ("marker", "o"), ("ms", 3))),
    MergeMethod("ae-endpoints", "K", True, "autoencoder", "the weighted mean of the decoded networks: "
                "Σ w_k dec(enc(θ_k))", True, "#d62728"),
)
BY_NAME = {m.name: m for m in TABLE}


def method(name: str) -> MergeMethod:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown merge method {name!r}; expected one of {', '.join(BY_NAME)}") from None


def names(*, group: str | None = None, inputs: str | None = None, needs_model: bool | None = None,
          curve: bool | None = None) -> tuple[str, ...]:
    """The names of the rows that match every given field, in table order."""
    return tuple(m.name for m in TABLE if (group is None or m.group == group) and (inputs is None or m.inputs == inputs)
                 and (needs_model is None or m.needs_model == needs_model) and (curve is None or m.curve == curve))


def help_text() -> str:
    """`gmnae merge --method`'s help: every name with its meaning."""
    return "; ".join(f"{m.name}: {m.meaning}" + (" (--model)" if m.needs_model else "")
                     + (" (two inputs)" if m.inputs == "2" else "") for m in TABLE)


# ---- names stored by older runs -------------------------------------------------------------------
LEGACY_MARKER = "ae-latent"
LEGACY_NAMES = {"ae": "ae-endpoints", "ae-latent": "ae"}  # evaluate / callback outputs before the table


def current_names(stored: Iterable[str]) -> dict[str, str]:
    """stored name -> today's name, for the method names of ONE stored evaluation (all of them together: an
    evaluation that holds `ae-latent` was written before the table, its `ae` is today's `ae-endpoints`)."""
    stored = list(dict.fromkeys(stored))
    legacy = LEGACY_MARKER in stored
    return {n: LEGACY_NAMES.get(n, n) if legacy else n for n in stored}


def current_rows(rows: list[dict], key: str = "method", by: tuple[str, ...] = ("step",)) -> list[dict]:
    """Rows of stored evaluations (barriers.csv, summary.json's "barriers") with today's method names; rows that
    share the `by` fields (present ones) are one evaluation."""
    groups: dict[tuple, list[str]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(b) for b in by), []).append(r[key])
    rename = {g: current_names(ns) for g, ns in groups.items()}
    return [{**r, key: rename[tuple(r.get(b) for b in by)][r[key]]} for r in rows]


_INTERP = re.compile(r"^(interp/[^/]+/)([^/]+)(/.*)$")
_MIDPOINT = re.compile(r"^(.*midpoint_)(ae-latent|ae)((?:\+ft\d+)?_[a-z]+)$")


def _split_key(key: str):
    m = _INTERP.match(key) or _MIDPOINT.match(key)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def current_columns(values: dict) -> dict:
    """One stored evaluation's logged values (a metrics.csv row: `interp/<pair type>/<method>/<metric>`; a
    reconstruction dict: `<prefix>midpoint_<method>[+ft<S>]_<metric>`) with today's method names in the keys.
    Only keys with a value count as the evaluation's (a CSV row holds empty cells of other evaluations)."""
    filled = {k: _split_key(k) for k, v in values.items() if v not in ("", None)}
    rename = current_names(p[1] for p in filled.values() if p)
    out = {f"{p[0]}{rename[p[1]]}{p[2]}" if p else k: values[k] for k, p in filled.items()}
    for k, v in values.items():  # the empty cells, where no value of this evaluation took their name
        if k not in filled:
            out.setdefault(k, v)
    return out
