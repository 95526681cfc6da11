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

from .errors import ConfigError

GROUPS = ("dataset", "model", "trainer")


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
    return OmegaConf.load(path)


def parse_overrides(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split `group=name` choices from other `key=value` overrides, checking the syntax."""
    groups, rest = {}, []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not key=value (e.g. dataset=digits-cnn optim.lr=3e-4)")
        key, value = item.split("=", 1)
        if key in GROUPS:
            groups[key] = value
        else:
            rest.append(item)
    return groups, rest


def load_config(overrides: list[str] | None = None, base: DictConfig | None = None) -> DictConfig:
    """Compose the training config. `base`: a saved run config to start from (resume)."""
    groups, rest = parse_overrides(list(overrides or []))
    if base is not None:
        cfg = base.copy()
        for group, name in groups.items():
            cfg[group] = _load_group(group, name)
            cfg.choices[group] = name
    else:
        root = OmegaConf.load(config_dir() / "train.yaml")
        choices = dict(root.pop("defaults"))
        if "dataset" in groups:
            choices["dataset"] = groups["dataset"]
        dataset = _load_group("dataset", choices["dataset"])
        suggested = dict(dataset.pop("defaults", {}) or {})
        for group in GROUPS:
            choices[group] = groups.get(group, suggested.get(group, choices[group]))
        parts = {g: (dataset if g == "dataset" else _load_group(g, choices[g])) for g in GROUPS}
        # Top-level keys a group file sets (e.g. a dataset's `optim:` or `data:` tuning) merge into the root.
        tops = [parts[g].pop("override", None) for g in GROUPS]
        cfg = OmegaConf.merge(root, {g: parts[g] for g in GROUPS}, *[t for t in tops if t])
        cfg.choices = choices
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(rest))
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"bad override: {e}".splitlines()[0]) from e
    _check_keys(cfg, rest)
    return cfg


def _check_keys(cfg: DictConfig, rest: list[str]) -> None:
    """An override of a key the config does not have is almost always a typo: say so."""
    template = OmegaConf.load(config_dir() / "train.yaml")
    for item in rest:
        key = item.split("=", 1)[0]
        top = key.split(".")[0]
        if top.startswith("+"):
            continue
        if top not in template and top not in GROUPS and top != "choices":
            raise ConfigError(f"unknown config key {key!r}; top-level keys: "
                              f"{', '.join(k for k in template if k != 'defaults')}, {', '.join(GROUPS)}")


def save_config(cfg: DictConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    os.replace(tmp, path)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)
