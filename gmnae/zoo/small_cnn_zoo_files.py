"""Readers of the Small CNN Zoo's files (the importer is `gmnae.zoo.import_small_cnn_zoo`):
`layout.csv` (where each TensorFlow variable lies in a weights row, and the permutation to our flat
layout), `metrics.csv.gz` (one row per weights row, every column kept) and the published row-order file.
"""
from __future__ import annotations

import ast
import csv
import gc
import gzip
import itertools
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GmnaeError

# Row order behind the published CIFAR-10 Small CNN Zoo splits (NFN, MIT licence); origin in data/README.md.
SMALL_CNN_ZOO_CIFAR10_ORDER = Path(__file__).resolve().parent / "data" / "small-cnn-zoo-cifar10-order.csv"
from ..weightspace.architecture import Architecture

SOURCE_HINT = ("the Small CNN Zoo files come from the zoo's release "
               "(https://github.com/google-research/google-research/tree/master/dnn_predict_accuracy: "
               "cifar10.tar.xz, unpacked)")


# --------------------------------------------------------------------------------------------
# layout.csv: TensorFlow variables -> our flat layout
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayoutEntry:
    varname: str
    start: int
    end: int
    shape: tuple[int, ...]


_VARNAME = re.compile(r"^(?P<layer>.+)/(?P<part>kernel|bias)(?::\d+)?$")
_NUMBERED = re.compile(r"^(?P<base>.*?)(?:_(?P<num>\d+))?$")


def read_layout(path: Path) -> list[LayoutEntry]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in (reader.fieldnames or [])]
        if missing:
            raise GmnaeError(f"{path} lacks the column(s) {', '.join(missing)} (a Small CNN Zoo layout.csv has "
                             f"varname,start_idx,end_idx,shape); {SOURCE_HINT}")
        entries = []
        for line, row in enumerate(reader, start=2):
            try:
                shape = ast.literal_eval(row["shape"].strip())
                shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
                e = LayoutEntry(row["varname"].strip(), int(row["start_idx"]), int(row["end_idx"]), shape)
            except (ValueError, SyntaxError, TypeError, AttributeError) as err:
                raise GmnaeError(f"{path} line {line} cannot be read ({err}): {row}") from err
            if e.end - e.start != math.prod(e.shape) or e.start < 0:
                raise GmnaeError(f"{path} line {line}: {e.varname} spans {e.start}:{e.end} "
                                 f"({e.end - e.start} values) but has shape {e.shape} ({math.prod(e.shape)} values)")
            entries.append(e)
    if not entries:
        raise GmnaeError(f"{path} lists no variables; {SOURCE_HINT}")
    return entries


def _natural(layer: str) -> tuple[str, int]:
    m = _NUMBERED.match(layer)
    return m.group("base"), int(m.group("num") or 0)


def _tf_shapes(spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if spec.layer_type == "conv":
        return (spec.kernel[0], spec.kernel[1], spec.n_in, spec.n_out), (spec.n_out,)
    return (spec.n_in, spec.n_out), (spec.n_out,)


def layout_permutation(entries: list[LayoutEntry], arch: Architecture, n_cols: int, path: Path = Path("layout.csv"),
                       weights_path: Path = Path("weights.npy")) -> np.ndarray:
    """Index array `perm` with `ours = tf_row[perm]`: HWIO kernels -> `[out, in, kh, kw]`, dense `[in, out]` ->
    `[out, in]`, layer by layer, weight then bias. Refuses layouts that do not describe `arch` exactly."""
    total = sum(e.end - e.start for e in entries)
    covered = np.zeros(max(total, max(e.end for e in entries)), dtype=np.int32)
    for e in entries:
        covered[e.start:e.end] += 1
    if total != n_cols or len(covered) != n_cols or not (covered == 1).all():
        raise GmnaeError(f"{path} describes {total} parameters over columns 0..{max(e.end for e in entries)}, "
                         f"but the rows of {weights_path} have {n_cols} columns; the layout does not belong to "
                         f"these weights ({SOURCE_HINT})")
    if total != arch.n_params:
        raise GmnaeError(f"{path} describes {total} parameters per network; the Small CNN Zoo network "
                         f"({arch.describe()}) has {arch.n_params}")
    layers: dict[str, dict[str, LayoutEntry]] = {}
    for e in entries:
        m = _VARNAME.match(e.varname)
        if not m:
            raise GmnaeError(f"{path}: variable {e.varname!r} is neither a kernel nor a bias "
                             "(expected names like sequential/conv2d/kernel:0)")
        parts = layers.setdefault(m.group("layer"), {})
        if m.group("part") in parts:
            raise GmnaeError(f"{path}: {e.varname} appears twice")
        parts[m.group("part")] = e
    for layer, parts in layers.items():
        if set(parts) != {"kernel", "bias"}:
            raise GmnaeError(f"{path}: layer {layer} has no {'bias' if 'kernel' in parts else 'kernel'}")
    convs = sorted((l for l, p in layers.items() if len(p["kernel"].shape) == 4), key=_natural)
    denses = sorted((l for l, p in layers.items() if len(p["kernel"].shape) == 2), key=_natural)
    odd = [l for l in layers if l not in convs and l not in denses]
    if odd or len(convs) != arch.n_conv or len(convs) + len(denses) != arch.n_layers:
        raise GmnaeError(f"{path} lists {len(convs)} conv and {len(denses)} dense layer(s)"
                         f"{' and ' + ', '.join(odd) if odd else ''}; expected {arch.describe()}")
    perm = []
    for i, (layer, spec) in enumerate(zip(convs + denses, arch.layers)):
        k, b = layers[layer]["kernel"], layers[layer]["bias"]
        want_k, want_b = _tf_shapes(spec)
        for e, want in ((k, want_k), (b, want_b)):
            if e.shape != want:
                raise GmnaeError(f"{path}: {e.varname} has TensorFlow shape {e.shape}, layer {i} of "
                                 f"{arch.describe()} needs {want}")
        idx = np.arange(k.start, k.end).reshape(k.shape)
        perm.append((idx.transpose(3, 2, 0, 1) if spec.layer_type == "conv" else idx.T).ravel())
        perm.append(np.arange(b.start, b.end))
    perm = np.concatenate(perm).astype(np.int64)
    assert len(perm) == arch.n_params and len(np.unique(perm)) == arch.n_params
    return perm


# --------------------------------------------------------------------------------------------
# metrics.csv.gz and the order file
# --------------------------------------------------------------------------------------------
class _NotNumeric(Exception):
    def __init__(self, column: int):
        self.column = column


def _parse_numbers(col: tuple) -> np.ndarray:
    """Strings -> float64 (empty cells NaN); ValueError on anything that is not a number."""
    try:
        return np.array(col, dtype=np.float64)
    except ValueError:
        return np.fromiter((float(v) if v.strip() else np.nan for v in col), dtype=np.float64, count=len(col))


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """All columns of a metrics CSV (gzipped or not): numbers as int64/float64, the rest as str objects.

    One streaming pass in chunks of rows, transposed to columns and parsed by NumPy; repeated strings
    share one object. A column found non-numeric after its first chunk is read again as text. A
    nameless column (an index pandas wrote) is skipped.
    """
    as_text: set[int] = set()
    enabled = gc.isenabled()
    gc.disable()  # millions of short-lived row lists would trigger collections for nothing
    try:
        while True:
            try:
                return _read_metrics(path, as_text)
            except _NotNumeric as e:
                as_text.add(e.column)
    finally:
        if enabled:
            gc.enable()


METRICS_CHUNK_ROWS = 16384


def _read_metrics(path: Path, as_text: set[int]) -> dict[str, np.ndarray]:
    gz = str(path).endswith(".gz")
    try:
        with (gzip.open(path, "rt", newline="") if gz else open(path, newline="")) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise GmnaeError(f"{path} is empty; {SOURCE_HINT}")
            keep = [i for i, h in enumerate(header) if h.strip() and not h.startswith("Unnamed:")]
            numeric = {i: i not in as_text for i in keep}
            nums: dict[int, list] = {i: [] for i in keep}
            int_text = {i: True for i in keep}  # integers only where the text has no '.', exponent, nan, inf
            strs: dict[int, list] = {i: [] for i in keep}
            n = 0
            while chunk := list(itertools.islice(reader, METRICS_CHUNK_ROWS)):
                if set(map(len, chunk)) != {len(header)}:
                    bad = next(j for j, row in enumerate(chunk) if len(row) != len(header))
                    raise GmnaeError(f"{path} line {n + bad + 2} has {len(chunk[bad])} fields, the header "
                                     f"{len(header)}; the file is truncated or corrupt")
                cols = list(zip(*chunk))
                for i in keep:
                    if numeric[i]:
                        try:
                            nums[i].append(_parse_numbers(cols[i]))
                            if int_text[i]:
                                text = "".join(cols[i])
                                int_text[i] = not any(c in text for c in ".eEnNiI")
                            continue
                        except ValueError:
                            if n:
                                raise _NotNumeric(i) from None
                            numeric[i] = False
                    strs[i].extend(map(sys.intern, cols[i]))  # repeated values share one object
                n += len(chunk)
    except (OSError, EOFError, gzip.BadGzipFile, csv.Error, UnicodeDecodeError) as e:
        raise GmnaeError(f"{path} cannot be read ({type(e).__name__}: {e}); the file is corrupt, get it again "
                         f"({SOURCE_HINT})") from e
    out: dict[str, np.ndarray] = {}
    for i in keep:
        name = header[i].strip().replace("/", "_")
        if numeric[i]:
            col = np.concatenate(nums[i]) if nums[i] else np.zeros(0)
            if n and int_text[i] and np.isfinite(col).all() and np.abs(col).max() < 2**53:
                col = col.astype(np.int64)
            out[name] = col
        else:
            out[name] = np.array(strs[i], dtype=object)
    return out


def read_order(path: Path) -> np.ndarray:
    """Every integer line of the order file, the first line included (pandas `header=None`)."""
    values = []
    try:
        with open(path) as f:
            for line, text in enumerate(f, start=1):
                text = text.strip().strip(",")
                if not text:
                    continue
                try:
                    values.append(int(text))
                except ValueError as e:
                    raise GmnaeError(f"{path} line {line} is {text!r}, not a row index") from e
    except OSError as e:
        raise GmnaeError(f"cannot read the order file {path} ({e})") from e
    return np.asarray(values, dtype=np.int64)
