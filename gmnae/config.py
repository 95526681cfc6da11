"""Configuration: OmegaConf YAML with config groups, chosen by one key each, overridden as key=value.

    cfg = load_config(["dataset=digits-cnn", "optim.lr=3e-4", "trainer=ddp"])

Resolution order (later wins): `configs/train.yaml` -> the chosen `configs/<group>/<name>.yaml`
for each group (dataset, model, trainer; a dataset file may suggest other groups in its own
`defaults:`, used unless the command line names them) -> command-line `key=value` overrides.
Resolution reads only files and arguments — never the clock or a random source — so every DDP
process that re-reads the config gets the same result.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config_schema import (DatasetConfig, ModelConfig, TrainConfig, check_complete, check_values, merge_checked,
                            typed)
from .errors import ConfigError

GROUPS = ("dataset", "model", "trainer")
GROUP_SCHEMAS = {"dataset": DatasetConfig, "model": ModelConfig}  # trainer: Lightning's arguments


def config_dir() -> Path:
    """`configs/` beside the package (a source checkout / editable install), or $GMNAE_CONFIG_DIR."""
    env = os.environ.get("GMNAE_CONFIG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "configs"


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def _load_group(group: str, name: str) -> DictConfig:
    path = config_dir() / group / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no {group} config named {name!r} ({path} does not exist); "
                          f"available: {', '.join(available(group))}")
    try:
        return OmegaConf.load(path)
    except Exception as e:  # YAML syntax
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e


def _typed_group(group: str, name: str, node: DictConfig) -> DictConfig:
    """A group file checked against its part of the schema, so that an error names the file."""
    origin = f"{config_dir() / group / name}.yaml"
    if group == "trainer":  # free-form: Lightning's arguments
        check_values(OmegaConf.create({"trainer": node}), TrainConfig, origin)
        return node
    out = typed(GROUP_SCHEMAS[group], node, origin, prefix=group)
    check_complete(out, GROUP_SCHEMAS[group], origin, prefix=group)
    return out


def dataset_file(name: str) -> DictConfig:
    """The dataset's file as written (e.g. its default `zoo:` path)."""
    return _load_group("dataset", name)


def _absolute_paths(cfg: DictConfig) -> None:
    """Saved configs hold absolute data paths: a resume from another working directory finds the same zoo."""
    for key in ("zoo", "data_root"):
        if cfg.dataset.get(key):
            cfg.dataset[key] = str(Path(cfg.dataset[key]).expanduser().absolute())


def parse_overrides(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split `group=name` choices from other `key=value` overrides, checking the syntax."""
    groups, rest = {}, []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not key=value (e.g. dataset=digits-cnn optim.lr=3e-4)")
        key, value = item.lstrip("+").split("=", 1)
        if key in GROUPS:
            groups[key] = value
        else:
            rest.append(f"{key}={value}")
    return groups, rest


def load_config(overrides: list[str] | None = None, base: DictConfig | None = None,
                base_origin: str = "saved run config") -> DictConfig:
    """Compose the training config and check it against the schema (gmnae/config_schema.py).
    `base`: a saved run config to start from (resume)."""
    groups, rest = parse_overrides(list(overrides or []))
    if base is not None:
        cfg = typed(TrainConfig, base, base_origin)
        for group, name in groups.items():
            node = _load_group(group, name)
            node.pop("defaults", None), node.pop("override", None)
            cfg[group] = _typed_group(group, name, node)
            cfg.choices[group] = name
    else:
        root_path = config_dir() / "train.yaml"
        root = OmegaConf.load(root_path)
        choices = dict(root.pop("defaults"))
        if "dataset" in groups:
            choices["dataset"] = groups["dataset"]
        dataset = _load_group("dataset", choices["dataset"])
        suggested = dict(dataset.pop("defaults", {}) or {})
        for group in GROUPS:
            choices[group] = groups.get(group, suggested.get(group, choices[group]))
        parts = {g: (dataset if g == "dataset" else _load_group(g, choices[g])) for g in GROUPS}
        # Top-level keys a group file sets (e.g. a dataset's `optim:` or `data:` tuning) merge into the root.
        tops = {g: parts[g].pop("override", None) for g in GROUPS}
        for g in GROUPS:
            parts[g] = _typed_group(g, choices[g], parts[g])
            if tops[g]:
                typed(TrainConfig, tops[g], f"{config_dir() / g / choices[g]}.yaml (override:)")
        cfg = typed(TrainConfig, root, str(root_path))
        cfg = OmegaConf.merge(cfg, {g: parts[g] for g in GROUPS}, *[t for t in tops.values() if t])
        cfg.choices = choices
    try:
        dotlist = OmegaConf.from_dotlist(rest)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad override: {e}".splitlines()[0]) from e
    cfg = merge_checked(cfg, dotlist, TrainConfig, "command line")
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad interpolation: {e}".splitlines()[0]) from e
    check_complete(cfg, TrainConfig, "config")
    _absolute_paths(cfg)
    return cfg


def save_config(cfg: DictConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    os.replace(tmp, path)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)
