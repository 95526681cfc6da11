"""`gmnae train -m …`: a sweep -- every combination of comma-separated override values, one run each.

    gmnae train -m seed=0,1,2 model.encoder.symmetry=permutation,sign    # 6 runs
    gmnae report runs/digits-inr-scalegmn-small-sweep                     # mean ± std over the seeds

In -m mode a comma at the top level of a value separates sweep values; commas inside brackets,
braces or quotes do not, so a literal list stays one value (`model.decoder.hidden=[64,128]`, a
sweep over lists: `model.decoder.hidden=[64,128],[128,256]`). Every combination's config is
resolved before the first run starts, so a typo stops the sweep with one line and nothing written.

The runs go into one folder, `runs_dir/<name>-sweep/` (`-vN` when taken), each named
`<name>-<key=value,…>` after its swept values, where <name> is the run_name given, else the
default run name less the parts being swept (<dataset>-<model>[-s<seed>], or the experiment's).
`sweep.json` in that folder lists the runs, their overrides and their status; it is rewritten
after every run, so an interrupted sweep still says what finished. Each run is its own
`python -m gmnae train` process (Lightning's DDP launcher re-runs the command line of the process,
and a crash or leak in one run cannot take the others with it); a failed run is recorded and the
sweep goes on; the summary at the end names every run and how it ended.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from ..config.load import EXPERIMENT, load_config
from ..errors import ConfigError, check_writable

MANIFEST = "sweep.json"
UNSWEPT = ("run_name", "runs_dir", "ckpt_path", "mode")  # a sweep owns its run names and folder; runs are fresh fits
MAX_NAME = 150  # characters of a run folder name before the summary is shortened with a hash
_OPEN, _CLOSE = "[{(", "]})"


def split_values(item: str) -> tuple[str, list[str]]:
    """`key=a,b,[1,2]` -> ("key", ["a", "b", "[1,2]"]): split at commas outside brackets and quotes."""
    if "=" not in item or item.startswith("="):
        raise ConfigError(f"sweep override {item!r} is not key=value[,value...] (e.g. seed=0,1,2)")
    key, text = item.split("=", 1)
    values, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    if quote or depth != 0:
        raise ConfigError(f"sweep override {item!r} has an unclosed {'quote' if quote else 'bracket'}; "
                          f"a literal list is written whole in brackets, e.g. {key}=[64,128]")
    values.append(text[start:])
    if any(v.strip() == "" for v in values) and len(values) > 1:
        raise ConfigError(f"sweep override {item!r} has an empty value; separate values by single commas "
                          f"(e.g. {key}=0,1,2)")
    return key, values


def parse_sweep(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The fixed overrides and the swept keys with their values (in command-line order)."""
    fixed, axes = [], {}
    for item in overrides:
        key, values = split_values(item)
        bare = key.lstrip("+")
        if len(values) == 1:
            fixed.append(item)
            continue
        if bare in axes:
            raise ConfigError(f"sweep: {bare} is swept twice; give its values once ({bare}={','.join(values)})")
        if bare in UNSWEPT:
            raise ConfigError(f"sweep: {bare} cannot be swept (the sweep names its runs and folder); "
                              f"give one value")
        if len(set(values)) < len(values):
            raise ConfigError(f"sweep: {item!r} repeats a value; give each once")
        axes[bare] = values
    return fixed, axes


def combinations(axes: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product, the last key varying fastest (like nested loops in command-line order)."""
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]


def summary(point: dict[str, str]) -> str:
    """`seed=1,model.encoder.symmetry=sign`, made safe as a folder name (and short enough)."""
    text = ",".join(f"{k}={v}" for k, v in point.items())
    safe = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", text).strip("_")
    if len(safe) > MAX_NAME:
        safe = safe[:MAX_NAME - 9] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return safe


def sweep_stem(cfg, axes: dict[str, list[str]]) -> str:
    """The runs' shared name: run_name if given, else the default name less what is swept."""
    if cfg.run_name:
        return cfg.run_name
    if EXPERIMENT in axes:  # recipes may choose other datasets and models: name neither
        parts = []
    elif cfg.choices.get(EXPERIMENT):
        parts = [cfg.choices[EXPERIMENT]]
    else:
        parts = [cfg.choices[g] for g in ("dataset", "model") if g not in axes]
    if "seed" not in axes:
        parts.append(f"s{cfg.seed}")
    return "-".join(parts) or "sweep"


def _free_folder(path: Path) -> Path:
    v, out = 1, path
    while (out / MANIFEST).exists():
        v += 1
        out = path.with_name(f"{path.name}-v{v}")
    return out


def plan(overrides: list[str]) -> tuple[Path, list[dict]]:
    """Resolve every combination (a bad one stops here, before anything runs) and name the runs."""
    fixed, axes = parse_sweep(overrides)
    points = combinations(axes)
    configs = []
    for point in points:
        try:
            configs.append(load_config([*fixed, *(f"{k}={v}" for k, v in point.items())]))
        except ConfigError as e:
            where = f" (sweep run {summary(point)})" if point else ""
            raise ConfigError(f"{e}{where}") from None
    first = configs[0]
    stem = sweep_stem(first, axes)
    folder = _free_folder(Path(first.runs_dir).absolute() / f"{stem}-sweep")
    runs = []
    for point, cfg in zip(points, configs):
        name = f"{stem}-{summary(point)}" if point else stem
        runs.append({"name": name, "overrides": point,
                     "command": [*fixed, *(f"{k}={v}" for k, v in point.items()),
                                 f"runs_dir={folder}", f"run_name={name}"],
                     "status": "pending", "returncode": None, "seconds": None, "error": None})
    if len({r["name"] for r in runs}) < len(runs):  # two values that differ only in characters made safe
        raise ConfigError("sweep: two runs would get the same folder name after making it safe for file names; "
                          "give the values without / or spaces")
    return folder, runs


def write_manifest(folder: Path, fixed: list[str], axes: dict, runs: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"fixed": fixed, "axes": axes, "runs": runs}, indent=2))
    os.replace(tmp, folder / MANIFEST)


def _run_one(run: dict, build_zoo: bool, log: Path) -> tuple[int, str | None]:
    """One `gmnae train` process; its output goes to the terminal and to `log`. Returns (exit code, last error line)."""
    cmd = [sys.executable, "-m", "gmnae", "train", *(["--build-zoo"] if build_zoo else []), *run["command"]]
    env = {k: v for k, v in os.environ.items() if k != "GMNAE_RUN_DIR"}  # each run chooses its own folder
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the terminal as they are written
    last_error = None
    with open(log, "wb") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                  env=env) as proc:
        for line in proc.stdout:
            out.write(line)
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            text = line.decode(errors="replace").strip()
            if text.startswith(("gmnae: error:", "Traceback")) or re.match(r"^[\w.]+(Error|Exception)\b", text):
                last_error = text if last_error is None or not last_error.startswith("gmnae: error:") else last_error
        rc = proc.wait()
    return rc, last_error


def run_sweep(overrides: list[str], print_config: bool = False, build_zoo: bool = False) -> int:
    fixed, axes = parse_sweep(overrides)
    folder, runs = plan(overrides)
    if print_config:  # what would run, nothing written
        for r in runs:
            print(f"{r['name']}:\n" + OmegaConf.to_yaml(load_config(r["command"])))
        return 0
    check_writable(folder, f"sweep folder {folder} (runs_dir)")
    write_manifest(folder, fixed, axes, runs)
    (folder / "logs").mkdir(exist_ok=True)
    print(f"sweep folder: {folder} ({len(runs)} runs: {', '.join(f'{k} x{len(v)}' for k, v in axes.items()) or 'one'})",
          flush=True)
    try:
        for i, r in enumerate(runs, 1):
            print(f"== sweep run {i}/{len(runs)}: {r['name']}", flush=True)
            r["status"] = "running"
            write_manifest(folder, fixed, axes, runs)
            start = time.monotonic()
            rc, error = _run_one(r, build_zoo, folder / "logs" / f"{r['name']}.log")
            r.update(returncode=rc, seconds=round(time.monotonic() - start, 1), error=error,
                     status="done" if rc == 0 else "failed")
            write_manifest(folder, fixed, axes, runs)
    except KeyboardInterrupt:
        for r in runs:
            if r["status"] == "running":
                r["status"] = "interrupted"
        write_manifest(folder, fixed, axes, runs)
        raise
    failed = [r for r in runs if r["status"] != "done"]
    print(f"\nsweep: {len(runs) - len(failed)} of {len(runs)} runs done ({folder})")
    for r in runs:
        how = "done" if r["status"] == "done" else f"FAILED (exit {r['returncode']}): {r['error'] or 'see the log'}"
        print(f"  {r['name']}: {how} [{r['seconds']} s; log: logs/{r['name']}.log]")
    print(f"table: gmnae report {folder}")
    return 1 if failed else 0

