"""The table of `gmnae report RUN…` (gmnae/commands/report.py): one table of runs' final metrics, mean ± std over seeds.

    gmnae report runs/digits-inr-scalegmn-small-sweep            # a sweep folder (its sweep.json)
    gmnae report runs/cls-s0 runs/cls-s1 runs/cls-s2 --out table.md
    gmnae report runs/                                           # every run folder below runs/

Each run's final metrics: the last logged value of every metric column of its `csv/metrics.csv`
(shown by default: `val/…`, `test/…` and the autoencoder's `recon/…`; `--metrics` picks others by
name or pattern, e.g. `--metrics 'val/psnr,interp/*/barrier'`); task runs (classify, predict-accuracy) add their baselines' rows from
`results.json` under the same column names (`val/accuracy`, `test/kendall_tau`). Runs are grouped
by their resolved `config.yaml` with the seed (and bookkeeping keys such as run_name) left out, so
runs started one by one group exactly like a sweep's; a group is labelled by the keys that differ
between groups. Per group and row: mean ± sample std (ddof = 1) over the runs, and n; a single run
shows its value alone. A missing, failed or unfinished run is named on one line and left out; the
rest still aggregate. (`report.html`, the merging evaluation's page, is gmnae/evaluation/report.py.)
"""
from __future__ import annotations

import csv
import io
import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ..errors import GmnaeError
from ..merge.methods import current_columns

SWEEP_MANIFEST = "sweep.json"  # gmnae/commands/sweep.py writes it
# Keys that name, place or pace a run without changing what it computes: not part of a group's identity.
BOOKKEEPING = ("seed", "run_name", "runs_dir", "ckpt_path", "threads", "mode", "trainer.enable_progress_bar")
ENCODER = "encoder"  # the row of the trained model (results.json calls it that too)
NOT_METRICS = ("epoch", "step", "lr-*", "train/*", "interp/seconds")  # bookkeeping and running training values
SHOWN = ("val/*", "test/*", "recon/*")  # the default columns; interp/* (80 barrier figures) on request


@dataclass
class Run:
    path: Path
    seed: int
    config: dict                                # flattened config.yaml, dotted keys
    rows: dict = field(default_factory=dict)   # row name (encoder, baselines) -> {metric: value}


def find_runs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Run folders named directly, through a sweep's manifest, or as the subfolders of a runs folder;
    plus one line for each that is missing or that its sweep did not finish."""
    found, problems = [], []
    for path in paths:
        if (path / SWEEP_MANIFEST).exists():
            for r in json.loads((path / SWEEP_MANIFEST).read_text())["runs"]:
                if r["status"] != "done":
                    why = r.get("error") or (f"exit {r['returncode']}" if r.get("returncode") is not None else "")
                    problems.append(f"{path / r['name']}: sweep run {r['status']}" + (f" ({why})" if why else ""))
                else:
                    found.append(path / r["name"])
        elif (path / "config.yaml").exists() or (path / "csv").exists():
            found.append(path)
        elif path.is_dir() and any(p.is_dir() and (p / "config.yaml").exists() for p in path.iterdir()):
            found += sorted(p for p in path.iterdir() if p.is_dir() and (p / "config.yaml").exists())
        else:
            problems.append(f"{path}: no run here (no config.yaml, csv/metrics.csv or {SWEEP_MANIFEST})")
    return found, problems


def final_metrics(metrics_csv: Path) -> tuple[dict[str, float], int | None]:
    """The last logged value of each metric column, and the epoch of the last validation row."""
    last, epoch = {}, None
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            row = current_columns(row)  # an older evaluation's method names (ae-latent, ae) read as today's
            for key, value in row.items():
                if key and value not in ("", None) and not _matches(key, NOT_METRICS):
                    last[key] = float(value)
                    if key.startswith("val/") and row.get("epoch") not in ("", None):
                        epoch = int(float(row["epoch"]))
    return last, epoch


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _flatten(node, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list) else value
    return out


def _schema_defaults() -> dict:
    from ..config.schema import TrainConfig

    defaults = OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=False, throw_on_missing=False)
    return {k: v for k, v in _flatten(defaults).items() if v != "???"}


def load_run(path: Path) -> Run:
    """A finished run's config and final metrics; GmnaeError (one line) when it is missing or unfinished."""
    cfg_path, metrics_csv = path / "config.yaml", path / "csv" / "metrics.csv"
    if not cfg_path.exists():
        raise GmnaeError(f"{path}: no config.yaml (not a run folder, or the run never started)")
    if not metrics_csv.exists():
        raise GmnaeError(f"{path}: no csv/metrics.csv (the run never logged a metric)")
    from ..config.load import rename_legacy_keys

    cfg = rename_legacy_keys(OmegaConf.to_container(OmegaConf.load(cfg_path)), "", str(cfg_path))  # older runs' keys
    metrics, epoch = final_metrics(metrics_csv)
    trainer = cfg.get("trainer", {})
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    if not metrics:
        raise GmnaeError(f"{path}: unfinished (no validation metric logged yet)")
    if max_steps in (-1, None) and max_epochs and epoch is not None and epoch < max_epochs - 1:
        raise GmnaeError(f"{path}: unfinished (last validation at epoch {epoch + 1} of {max_epochs}); "
                         f"resume it with gmnae train --resume {path}")
    run = Run(path, int(cfg.get("seed", 0)), {**_schema_defaults(), **_flatten(cfg)}, {ENCODER: metrics})
    if cfg.get("task", "autoencode") != "autoencode":
        results = path / "results.json"
        if not results.exists():
            raise GmnaeError(f"{path}: unfinished (task={cfg['task']} but no results.json)")
        table = json.loads(results.read_text())
        for row in table["rows"]:
            if row["baseline"] != ENCODER:
                run.rows[row["baseline"]] = {f"{split}/{table['metric']}": float(row[split])
                                             for split in ("val", "test") if row.get(split) is not None}
    return run


def group_runs(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    """Runs with the same config but for the seed (and bookkeeping keys), each group labelled by the
    keys whose values differ between groups (`model=…` for a group choice, not each key it brings)."""
    def identity(run: Run) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in run.config.items()
                            if k not in BOOKKEEPING and k.split(".")[0] not in BOOKKEEPING))

    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(identity(run), []).append(run)
    keys = sorted({k for run in runs for k in run.config})
    varying = [k for k in keys if k not in BOOKKEEPING and len({repr(g[0].config.get(k)) for g in groups.values()}) > 1]
    chosen = [k.split(".", 1)[1] for k in varying if k.startswith("choices.")]
    shown = [k for k in varying if not k.startswith("choices.") and k.split(".")[0] not in chosen]
    out = []
    for members in groups.values():
        c = members[0].config
        label = ",".join([f"{g}={c.get(f'choices.{g}')}" for g in chosen] + [f"{k}={c.get(k)}" for k in shown])
        out.append((label or "all runs", members))
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), math.nan
    std = float(a.std(ddof=1))
    return float(a.mean()), 0.0 if np.ptp(a) == 0 else std  # equal values: 0, not rounding noise


def _cell(mean: float, std: float) -> str:
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def aggregate(groups: list[tuple[str, list[Run]]], only: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """One row per group and row name: {group, row, n, seeds, metric: (mean, std)}; and the metric columns
    (those matching `only`, names or patterns, in its order; default SHOWN)."""
    logged = {m for _, runs in groups for r in runs for row in r.rows.values() for m in row}
    columns = []
    for pattern in only or SHOWN:
        columns += sorted(m for m in logged if fnmatch.fnmatchcase(m, pattern))
    columns = list(dict.fromkeys(columns))  # a column two patterns match: once, where first matched
    table = []
    for label, runs in groups:
        names = list(dict.fromkeys(name for r in runs for name in r.rows))
        for name in names:
            have = [r for r in runs if name in r.rows]
            entry = {"group": label, "row": name, "n": len(have), "seeds": ",".join(str(r.seed) for r in have)}
            for m in columns:
                values = [r.rows[name][m] for r in have if m in r.rows[name]]
                entry[m] = _mean_std(values) if values else None
            table.append(entry)
    return columns, table


def markdown(columns: list[str], table: list[dict]) -> str:
    head = ["group", "row", *columns, "n", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in table:
        cells = [_cell(*e[m]) if e[m] else "" for m in columns]
        lines.append("| " + " | ".join([e["group"], e["row"], *cells, str(e["n"]), e["seeds"]]) + " |")
    return "\n".join(lines)


def as_csv(columns: list[str], table: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["group", "row", "n", "seeds", *(f"{m} {s}" for m in columns for s in ("mean", "std"))])
    for e in table:
        w.writerow([e["group"], e["row"], e["n"], e["seeds"],
                    *(x for m in columns for x in (e[m] if e[m] else ("", "")))])
    return buf.getvalue()
