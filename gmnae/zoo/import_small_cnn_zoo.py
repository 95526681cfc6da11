"""`gmnae zoo import small-cnn-zoo`: the Small CNN Zoo (Unterthiner et al. 2020) from the files on disk.

    gmnae zoo import small-cnn-zoo --src ~/data/small-cnn-zoo/cifar10                # ReLU -> zoo/cifar10-cnn
    gmnae zoo import small-cnn-zoo --src DIR --activation tanh                        # -> zoo/cifar10-cnn-tanh
    gmnae zoo import small-cnn-zoo --src DIR --activation all --split clean --all-steps

`--src` holds the unpacked `cifar10.tar.xz` of the zoo:
- `weights.npy`  float32 [270000, 4970]: 30,000 networks x 9 checkpoints, one flat TensorFlow
  parameter vector per row (memory-mapped here and streamed in blocks: memory stays bounded);
- `metrics.csv.gz` one row per weights row: `config.activation`, `config.b_init`, `config.dataset`,
  `config.dnn_architecture`, `config.dropout`, `config.epochs`, `config.epochs_between_checkpoints`,
  `config.init_std`, `config.l2reg`, `config.learning_rate`, `config.num_layers`, `config.num_units`,
  `config.optimizer`, `config.random_seed`, `config.train_fraction`, `config.w_init`, `modeldir`,
  `step`, `test_accuracy`, `test_loss`, `train_accuracy`, `train_loss` (names as in the zoo's README);
  every column travels into the shard metadata under its own name;
- `layout.csv` `varname,start_idx,end_idx,shape`: where each TensorFlow variable
  (`sequential/conv2d/kernel:0`, …, `sequential/dense/bias:0`) lies in a row, with its TF shape.
  Conv kernels are HWIO and become `[out, in, kh, kw]`; the dense kernel `[in, out]` becomes
  `[out, in]`; layers are matched by layer type (conv or dense) and TF name order and checked against the architecture.

Splits (`--split`):
- `published` (default) reproduces the split of NFN / ScaleGMN / the autoencoder paper exactly,
  quirk included: the row-order file (shipped: `gmnae/zoo/data/small-cnn-zoo-cifar10-order.csv`) is read
  with `header=None`, so its first line `0` counts as an index and row 0 is used twice; weights and
  metrics are reordered by it; rows with `step == 86` are kept and renumbered; test = the second half
  (`int(0.5 * n)` onward); the first half is shuffled with `random.Random(0).shuffle` and cut at
  `int(0.8 * len)` into train / val; the activation filter is applied within each split.
- `clean`: our own split by network (`modeldir`), each network to test / val / train with
  probability 0.5 / 0.1 / 0.4 from a hash of (seed, modeldir): no duplicates, all checkpoints of a
  network in one split, the same assignment whatever subset, order or activation is imported.

`--all-steps` keeps all 9 checkpoints of every network (in its network's split) instead of the final
one. Every shard is written straight to its final name; `.build/` remembers the settings and which
shards are finished, so an interrupted import picks up where it stopped when run again with the same
options; the manifest is written last.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import GmnaeError
from ..weightspace.architecture import Architecture
from .format import MAX_SHARD_BYTES, SPLITS
# The resumable shard writer, shared with the MNIST-INR importer and the forge
from .shard_writer import ResumableImport, fingerprint, progress_bar
# The readers of the zoo's files
from .small_cnn_zoo_files import SOURCE_HINT, layout_permutation, read_layout, read_metrics, read_order

FILES = ("weights.npy", "metrics.csv.gz", "layout.csv")
FINAL_STEP = 86
REQUIRED_COLUMNS = ("step", "config.activation", "test_accuracy")
SUPPORTED_ACTIVATIONS = ("relu", "tanh")
CLEAN_FRACTIONS = {"test": 0.5, "val": 0.1, "train": 0.4}
BLOCK_ROWS = 1024  # rows read, converted and written at a time (~20 MB)
PUBLISHED_PROCEDURE = (
    "NFN ZooDataset / ScaleGMN NFNZooDataset, reproduced exactly: the order file is read with "
    "header=None, so its first line '0' (a header pandas wrote) counts as an index and row 0 is used "
    "twice; weights and metrics are reordered by it; rows with step == 86 are kept and renumbered; "
    "test = positions int(0.5 * n) onward; positions before are shuffled with random.Random(0).shuffle "
    "and cut at int(0.8 * len) into train / val; then config.activation is filtered within each split")
IMAGE_SIZES = {"cifar10": (32, 32), "svhn_cropped": (32, 32), "mnist": (28, 28), "fashion_mnist": (28, 28)}


def default_order_file() -> Path:
    from .small_cnn_zoo_files import SMALL_CNN_ZOO_CIFAR10_ORDER

    return SMALL_CNN_ZOO_CIFAR10_ORDER


# --------------------------------------------------------------------------------------------
# Selection and splits
# --------------------------------------------------------------------------------------------
def published_split(order: np.ndarray, step: np.ndarray, final_step: int = FINAL_STEP) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The published split: split -> (source rows in split order, published index of each).

    The published index is the position among the renumbered final checkpoints (NFN's `metrics.index`).
    """
    finals = order[step[order] == final_step]
    n = len(finals)
    test_point = int(0.5 * n)
    trainval = list(range(test_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    idx = {"train": np.asarray(trainval[:val_point], dtype=np.int64),
           "val": np.asarray(trainval[val_point:], dtype=np.int64),
           "test": np.arange(test_point, n, dtype=np.int64)}
    return {s: (finals[i], i) for s, i in idx.items()}


def clean_assignment(keys: Iterable, seed: int) -> np.ndarray:
    """Split of each network key ("train"/"val"/"test"), from a hash of (seed, key): order- and subset-free."""
    out = []
    t_test, t_val = CLEAN_FRACTIONS["test"], CLEAN_FRACTIONS["test"] + CLEAN_FRACTIONS["val"]
    for k in keys:
        h = hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest()
        u = int.from_bytes(h, "big") / 2.0**64
        out.append("test" if u < t_test else "val" if u < t_val else "train")
    return np.asarray(out, dtype=object)


def _group_checkpoints(modeldir: np.ndarray, step: np.ndarray) -> dict[str, np.ndarray]:
    """modeldir -> that network's rows (indices into the given arrays) by step; networks by first row."""
    if len(modeldir) == 0:
        return {}
    uniq, inv = np.unique(modeldir, return_inverse=True)
    inv = inv.ravel()
    order = np.lexsort((step, inv))
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    groups = np.split(order, bounds)
    keys = uniq[inv[order[np.r_[0, bounds]]]]
    by_first = np.argsort([g.min() for g in groups], kind="stable")
    return {keys[j]: groups[j].astype(np.int64) for j in by_first}


@dataclass
class Plan:
    rows: dict[str, np.ndarray]             # split -> source rows of weights.npy, in output order
    extra: dict[str, dict[str, np.ndarray]]  # split -> extra metadata columns (published_index)
    info: dict


def plan_import(metrics: dict[str, np.ndarray], n_rows: int, activation: str, split: str, order_path: Path | None,
                all_steps: bool, split_seed: int, metrics_path: Path) -> Plan:
    step = metrics["step"]
    acts = metrics["config.activation"].astype(str)
    if not np.isfinite(np.asarray(step, dtype=np.float64)).all():
        bad = int(np.flatnonzero(~np.isfinite(np.asarray(step, dtype=np.float64)))[0])
        raise GmnaeError(f"{metrics_path} row {bad} (line {bad + 2}) has no step; the file is corrupt")
    if all_steps and "modeldir" not in metrics:
        raise GmnaeError(f"{metrics_path} has no modeldir column: --all-steps needs it to group checkpoints "
                         "by network")
    info: dict = {"split": split, "final_step": FINAL_STEP, "all_steps": all_steps}
    extra: dict[str, dict[str, np.ndarray]] = {}
    if split == "published":
        order = read_order(order_path)
        if len(order) and (order.min() < 0 or order.max() >= n_rows):
            raise GmnaeError(f"the order file {order_path} indexes rows up to {order.max()}, but the zoo has "
                             f"{n_rows} rows: it belongs to another zoo. Pass --order FILE for this zoo, or "
                             "--split clean")
        parts = published_split(order, step)
        finals_all = np.concatenate([parts[s][0] for s in SPLITS])
        info.update({"split_procedure": PUBLISHED_PROCEDURE, "order_file": str(order_path),
                     "order_entries": int(len(order)), "order_repeated_entries": int(len(order) - len(np.unique(order))),
                     "final_checkpoints": int(len(finals_all)),
                     "final_checkpoints_used_twice": int(len(finals_all) - len(np.unique(finals_all)))})
        rows, pidx = {s: parts[s][0] for s in SPLITS}, {s: parts[s][1] for s in SPLITS}
        if all_steps:
            groups = _group_checkpoints(metrics["modeldir"], step)
            for s in SPLITS:
                nets = [groups[metrics["modeldir"][r]] for r in rows[s]]
                pidx[s] = np.repeat(pidx[s], [len(g) for g in nets])
                rows[s] = np.concatenate(nets) if nets else np.zeros(0, np.int64)
        extra = {s: {"published_index": pidx[s]} for s in SPLITS}
    else:
        keys = metrics["modeldir"] if "modeldir" in metrics else np.arange(n_rows).astype(str).astype(object)
        uniq, inverse = np.unique(keys, return_inverse=True)
        assign = clean_assignment(uniq, split_seed)[inverse.ravel()]
        selected = np.ones(n_rows, bool) if all_steps else (step == FINAL_STEP)
        rows = {}
        for s in SPLITS:
            r = np.flatnonzero(selected & (assign == s))
            if all_steps:  # each network's checkpoints together, by step, networks in order of first row
                groups = _group_checkpoints(keys[r], step[r])
                r = np.concatenate([r[g] for g in groups.values()]) if groups else r
            rows[s] = r
        info.update({"split_procedure": "clean: by network (modeldir), test/val/train with probability "
                     f"{CLEAN_FRACTIONS['test']}/{CLEAN_FRACTIONS['val']}/{CLEAN_FRACTIONS['train']} from "
                     f"blake2b(seed:modeldir); seed {split_seed}", "split_seed": split_seed})
        extra = {s: {} for s in SPLITS}
    # Activation filter, within each split.
    wanted = SUPPORTED_ACTIVATIONS if activation == "all" else (activation,)
    for s in SPLITS:
        a = acts[rows[s]]
        if activation == "all":
            other = sorted(set(a.tolist()) - set(SUPPORTED_ACTIVATIONS))
            if other:
                raise GmnaeError(f"{metrics_path}: networks with config.activation {', '.join(map(repr, other))}; "
                                 f"the Small CNN Zoo architecture here supports {', '.join(SUPPORTED_ACTIVATIONS)}: "
                                 "import those with --activation relu / tanh")
        keep = np.isin(a, wanted)
        rows[s] = rows[s][keep]
        extra[s] = {k: v[keep] for k, v in extra[s].items()}
    info["planned"] = {s: int(len(rows[s])) for s in SPLITS}
    return Plan(rows, extra, info)


# --------------------------------------------------------------------------------------------
# The import
# --------------------------------------------------------------------------------------------
def check_sources(src: Path) -> dict[str, Path]:
    if not src.is_dir():
        raise GmnaeError(f"--src {src} is not a folder; point it at the unpacked zoo (holding {', '.join(FILES)}); "
                         f"{SOURCE_HINT}")
    paths = {f: src / f for f in FILES}
    missing = [f for f, p in paths.items() if not p.is_file()]
    if missing:
        raise GmnaeError(f"{src} lacks {', '.join(missing)} (a Small CNN Zoo folder holds {', '.join(FILES)}); "
                         f"{SOURCE_HINT}")
    return paths


def open_weights(path: Path) -> np.memmap:
    try:
        w = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise GmnaeError(f"{path} is not a readable .npy array ({e}); the file is truncated or corrupt, "
                         f"get it again ({SOURCE_HINT})") from e
    if w.ndim != 2 or w.dtype.kind != "f":
        raise GmnaeError(f"{path} holds {w.dtype} {w.shape}; expected a float matrix [networks x checkpoints, 4970]")
    return w


def _row_blocks(weights_path: Path, rows: np.ndarray, perm: np.ndarray, skip_nonfinite: bool, bar,
                describe: Callable[[int], str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for a in range(0, len(rows), BLOCK_ROWS):
        sub = rows[a:a + BLOCK_ROWS]
        # A fresh memory map per block: pages read for earlier blocks leave this process's memory.
        mm = np.load(weights_path, mmap_mode="r")
        order = np.argsort(sub, kind="stable")
        raw = np.empty((len(sub), mm.shape[1]), np.float32)
        raw[order] = mm[sub[order]]
        del mm
        params = np.take(raw, perm, axis=1)  # C-contiguous (raw[:, perm] is not: h5py would copy it again)
        finite = np.isfinite(params).all(axis=1)
        if not finite.all():
            if not skip_nonfinite:
                bad = int(sub[np.argmin(finite)])
                raise GmnaeError(f"{weights_path} row {bad} ({describe(bad)}) has NaN/Inf parameters; "
                                 "pass --skip-nonfinite to leave such networks out")
            params = params[finite]
        bar.update(len(sub))
        yield params, finite


def import_small_cnn_zoo(src, out=None, activation: str = "relu", name: str | None = None, split: str = "published",
                         order=None, all_steps: bool = False, split_seed: int = 0, skip_nonfinite: bool = False,
                         shard_rows: int | None = None, progress: bool = True,
                         stop_after_shards: int | None = None) -> Path:
    """Import (or resume importing) a Small CNN Zoo folder; returns the zoo folder. See the module docstring."""
    if activation not in (*SUPPORTED_ACTIVATIONS, "all"):
        raise GmnaeError(f"--activation must be relu, tanh or all, not {activation!r}")
    if split not in ("published", "clean"):
        raise GmnaeError(f"--split must be published or clean, not {split!r}")
    src = Path(src).expanduser()
    paths = check_sources(src)
    t0 = time.perf_counter()

    weights = open_weights(paths["weights.npy"])
    n_rows, n_cols = weights.shape
    del weights
    metrics = read_metrics(paths["metrics.csv.gz"])
    missing = [c for c in REQUIRED_COLUMNS if c not in metrics]
    if missing:
        raise GmnaeError(f"{paths['metrics.csv.gz']} lacks the column(s) {', '.join(missing)} "
                         f"(it has {', '.join(metrics) or 'none'}); {SOURCE_HINT}")
    n_metrics = len(metrics["step"])
    if n_metrics != n_rows:
        raise GmnaeError(f"{paths['metrics.csv.gz']} has {n_metrics} rows but {paths['weights.npy']} has {n_rows}; "
                         "the files belong to different zoos or one is truncated")

    datasets = sorted(set(metrics["config.dataset"].astype(str).tolist())) if "config.dataset" in metrics else ["cifar10"]
    if len(datasets) != 1:
        raise GmnaeError(f"{paths['metrics.csv.gz']} mixes datasets ({', '.join(datasets)}); import one zoo at a time")
    dataset = datasets[0]
    if split == "published" and order is None:
        if dataset != "cifar10":
            raise GmnaeError(f"the shipped published order belongs to the CIFAR-10 zoo, this is the {dataset} zoo: "
                             "pass --order FILE (its split CSV from the NFN repository) or --split clean")
        order = default_order_file()
    order = Path(order).expanduser() if order is not None else None
    if order is not None and not order.is_file():
        raise GmnaeError(f"order file {order} does not exist")

    act_name = "mixed" if activation == "all" else activation
    arch = Architecture.small_cnn(act_name, image_size=IMAGE_SIZES.get(dataset, (32, 32)),
                                  name=f"small-cnn-zoo-{dataset}-{act_name}")
    perm = layout_permutation(read_layout(paths["layout.csv"]), arch, n_cols, paths["layout.csv"], paths["weights.npy"])
    plan = plan_import(metrics, n_rows, activation, split, order if split == "published" else None, all_steps,
                       split_seed, paths["metrics.csv.gz"])

    name = name or default_name(activation, dataset)
    out = Path(out) if out else Path("zoo") / name
    shard_rows = int(shard_rows or max(1, MAX_SHARD_BYTES // (4 * arch.n_params)))
    config = {"importer": "small-cnn-zoo", "version": 1, "name": name, "activation": activation, "split": split,
              "all_steps": all_steps, "split_seed": split_seed if split == "clean" else None,
              "shard_rows": shard_rows, "inputs": fingerprint(*paths.values(), *([order] if split == "published" else []))}
    build = ResumableImport(out, config)

    total = sum(len(r) for r in plan.rows.values())
    done = 0
    for s in SPLITS:
        for k in range(math.ceil(len(plan.rows[s]) / shard_rows)):
            e = build.finished(f"{s}-{k:05d}.h5")
            done += e["planned"] if e else 0
    bar = progress_bar(total, f"importing {name}", progress, initial=done)
    mdir = metrics.get("modeldir")
    describe = lambda r: f"step {metrics['step'][r]}" + (f", {mdir[r]}" if mdir is not None else "")
    skipped = 0
    try:
        for s in SPLITS:
            rows = plan.rows[s]
            for k, a in enumerate(range(0, len(rows), shard_rows)):
                sub = rows[a:a + shard_rows]

                def meta(sub=sub, s=s, a=a):
                    cols = {"source_row": sub.astype(np.int64), "activation": metrics["config.activation"][sub]}
                    cols.update({c: v[a:a + len(sub)] for c, v in plan.extra[s].items()})
                    cols.update({c: v[sub] for c, v in metrics.items()})
                    return cols

                entry = build.shard(s, f"{s}-{k:05d}.h5", arch.n_params, len(sub),
                                    lambda sub=sub: _row_blocks(paths["weights.npy"], sub, perm, skip_nonfinite, bar,
                                                                describe),
                                    meta, stop_after=stop_after_shards)
                skipped += entry["planned"] - entry["count"]
    finally:
        bar.close()
    counts = {s: sum(e["count"] for e in build.shards.get(s, [])) for s in SPLITS}
    info = {
        "source": {"zoo": "Small CNN Zoo (Unterthiner et al. 2020, Predicting Neural Network Accuracy from Weights)",
                   "licence": "CC-BY 4.0", "src": str(src.resolve()), "rows": int(n_rows), "dataset": dataset},
        "import": {"importer": "gmnae zoo import small-cnn-zoo", "activation": activation,
                   "layout": "TensorFlow HWIO conv kernels -> [out, in, kh, kw]; dense [in, out] -> [out, in]",
                   **plan.info, "counts": counts, "skipped_nonfinite": int(skipped)},
    }
    info["import"]["seconds"] = round(time.perf_counter() - t0, 3)
    build.finish(name, arch, task_for(dataset), info)
    return out


def default_name(activation: str, dataset: str = "cifar10") -> str:
    base = {"cifar10": "cifar10-cnn"}.get(dataset, f"{dataset.replace('_', '-')}-cnn")
    return {"relu": base, "tanh": f"{base}-tanh", "all": f"{base}-all"}[activation]


def task_for(dataset: str) -> dict:
    h, w = IMAGE_SIZES.get(dataset, (32, 32))
    return {"name": dataset, "kind": "classification", "n_classes": 10, "image_size": [h, w], "channels": 1,
            "range": [-1, 1], "preprocessing": "pixels / 255 scaled to [-1, 1], then the mean over colour channels"}


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--src", required=True, help="folder with weights.npy, metrics.csv.gz and layout.csv")
    p.add_argument("--activation", default="relu", choices=["relu", "tanh", "all"],
                   help="networks to keep (all: a mixed zoo with a per-network activation column)")
    p.add_argument("--name", help="zoo name (default cifar10-cnn, cifar10-cnn-tanh or cifar10-cnn-all)")
    p.add_argument("--out", help="zoo folder (default zoo/NAME)")
    p.add_argument("--split", default="published", choices=["published", "clean"],
                   help="published: the exact split of NFN/ScaleGMN/the autoencoder paper (default); "
                        "clean: our own split by network")
    p.add_argument("--order", help="row-order file of the published split (default: the shipped CIFAR-10 order)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the clean split (default 0)")
    p.add_argument("--all-steps", action="store_true", help="keep all 9 checkpoints, not only the final one (step 86)")
    p.add_argument("--skip-nonfinite", action="store_true", help="leave out networks with NaN/Inf parameters "
                   "instead of stopping")
    p.add_argument("--shard-rows", type=int, help="networks per shard (default: 256 MB shards)")
    p.add_argument("--no-progress", action="store_true")


def summary_line(out: Path) -> str:
    """One line about a finished import, from its manifest."""
    from .format import Zoo

    zoo = Zoo(out)
    imp = zoo.manifest.get("import", {})
    counts = ", ".join(f"{s} {zoo.count(s)}" for s in zoo.splits)
    n = sum(zoo.count(s) for s in zoo.splits)
    line = f"imported {n} networks ({counts}) -> {out}"
    if imp.get("seconds"):
        line += f" in {imp['seconds']:.1f}s"
    if imp.get("skipped_nonfinite"):
        line += f"; left out {imp['skipped_nonfinite']} with NaN/Inf parameters"
    return line


def run(args) -> int:
    from .commands import resumable

    with resumable("import"):
        out = import_small_cnn_zoo(args.src, args.out, activation=args.activation, name=args.name, split=args.split,
                                   order=args.order, all_steps=args.all_steps, split_seed=args.split_seed,
                                   skip_nonfinite=args.skip_nonfinite, shard_rows=args.shard_rows,
                                   progress=not args.no_progress)
    print(summary_line(out))
    return 0
