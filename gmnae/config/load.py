"""Configuration: OmegaConf YAML with config groups, chosen by one key each, overridden as key=value.

    cfg = load_config(["dataset=digits-cnn", "optim.lr=3e-4", "trainer=ddp"])

Resolution order (later wins): `configs/train.yaml` -> the chosen `configs/<group>/<name>.yaml`
for each group (dataset, model, trainer; a dataset file may suggest other groups in its own
`defaults:`, used unless the command line names them) -> the recipe `configs/experiment/<name>.yaml`
when `experiment=NAME` is given (its `defaults:` choose groups, its other keys override any key)
-> command-line `key=value` overrides. Group choices: command line > experiment > dataset > train.yaml.
A group file may start from another file of its group with `extends: NAME` (e.g. every trainer
extends `trainer/base.yaml`): the named file, then this file's keys over it.
Resolution reads only files and arguments — never the clock or a random source — so every DDP
process that re-reads the config gets the same result.

Where the files come from: the configs shipped inside the package (`gmnae/configs/`), overlaid by a
user's own config folders — `$GMNAE_CONFIG_PATH` (folders separated by `os.pathsep`) and `gmnae train
--config-dir DIR` (which adds DIR to that variable, so DDP processes read the same folders). Each file
(`train.yaml`, `dataset/NAME.yaml`, ...) is read from the first folder that has it; a group lists the
files of every folder. docs/configuration.md shows how.
"""
from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .schema import (DatasetConfig, ModelConfig, TrainConfig, check_complete, check_values, merge_checked,
                            typed)
from ..errors import ConfigError
from ..weightspace.family import current_family_name

GROUPS = ("dataset", "model", "trainer")
EXPERIMENT = "experiment"  # configs/experiment/NAME.yaml: a recipe that may set groups and any key
BASES = ("base",)  # files other files of their group extend; not offered as choices
# Keys renamed since configs and runs were saved: old dotted key -> current key. The old name is still accepted
# wherever a key can be written (group files, recipes, saved run configs, the command line) and means exactly
# what the current one does; it is renamed before the schema sees it.
RENAMED_KEYS = {"dataset.kind": "dataset.family", "evaluation.pairs_per_kind": "evaluation.pairs_per_type",
                "model.decoder.kind": "model.decoder.type"}
# Values renamed since: dotted key -> the function giving a saved value's current spelling ("inr" -> "siren").
RENAMED_VALUES = {"dataset.family": current_family_name}
GROUP_SCHEMAS = {"dataset": DatasetConfig, "model": ModelConfig}  # trainer: Lightning's arguments


CONFIG_PATH_ENV = "GMNAE_CONFIG_PATH"  # a user's config folders, searched before the shipped ones


def config_dir() -> Path:
    """The configs shipped inside the package (a wheel carries them: pyproject's package-data)."""
    return Path(__file__).resolve().parent.parent / "configs"


def config_dirs() -> list[Path]:
    """The folders config files are read from, first match wins: $GMNAE_CONFIG_PATH's, then the shipped ones."""
    users = [Path(p).expanduser() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    for folder in users:
        if not folder.is_dir():
            raise ConfigError(f"config folder {folder} ({CONFIG_PATH_ENV} or --config-dir) does not exist; "
                              "pass a folder that holds train.yaml and/or dataset/, model/, trainer/, experiment/")
    return [*users, config_dir()]


def add_config_dir(folder) -> None:
    """`--config-dir DIR`: searched before $GMNAE_CONFIG_PATH's folders; set in the environment so that the
    processes a launcher starts (DDP) read the same files."""
    rest = os.environ.get(CONFIG_PATH_ENV, "")
    os.environ[CONFIG_PATH_ENV] = os.pathsep.join([str(Path(folder).expanduser().absolute()), *([rest] if rest else [])])
    config_dirs()  # a missing folder stops here, in one line


def config_file(relative: str) -> Path:
    """`relative` (e.g. "dataset/digits-inr.yaml") from the first config folder that has it; else where the
    shipped one would be (its absence is reported by the caller)."""
    for folder in config_dirs():
        if (folder / relative).exists():
            return folder / relative
    return config_dir() / relative


def _holder(tree: dict, key: str, prefix: str) -> tuple[dict | None, str]:
    """The dict of `tree` that holds the dotted `key` (a key of the whole config; `tree` is the part under
    `prefix`), and the key's last part; None where `tree` does not hold it."""
    if prefix and not key.startswith(prefix + "."):
        return None, ""
    *path, leaf = key[len(prefix) + 1:].split(".") if prefix else key.split(".")
    parent = tree
    for part in path:
        parent = parent.get(part) if isinstance(parent, dict) else None
    return (parent, leaf) if isinstance(parent, dict) and leaf in parent else (None, leaf)


def rename_legacy_keys(node, prefix: str = "", origin: str = "config"):
    """`node` -- a whole config, or the part of one under `prefix` (a dataset file: "dataset") -- with every old
    key name of RENAMED_KEYS replaced by its current one, in the old key's place, and every old value of
    RENAMED_VALUES by its current spelling. A DictConfig or a plain dict."""
    if node is None:
        return node
    tree = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig) else node
    changed = False
    for old, new in RENAMED_KEYS.items():
        parent, leaf = _holder(tree, old, prefix)
        if parent is None:
            continue
        new_leaf = new.rsplit(".", 1)[-1]
        if new_leaf in parent:
            raise ConfigError(f"{origin}: both {old} (its old name) and {new} are set; keep {new}")
        items = [(new_leaf if k == leaf else k, v) for k, v in parent.items()]
        parent.clear()
        parent.update(items)
        changed = True
    for key, current in RENAMED_VALUES.items():
        parent, leaf = _holder(tree, key, prefix)
        if parent is not None and current(parent[leaf]) != parent[leaf]:
            parent[leaf] = current(parent[leaf])
            changed = True
    if not changed:
        return node
    return OmegaConf.create(tree) if isinstance(node, DictConfig) else tree


def available(group: str) -> list[str]:
    return sorted({p.stem for folder in config_dirs() for p in (folder / group).glob("*.yaml") if p.stem not in BASES})


def _load_group(group: str, name: str, _chain: tuple[str, ...] = ()) -> DictConfig:
    """A group file as written, with the file it `extends:` (recursively) under it."""
    path = config_file(f"{group}/{name}.yaml")
    if not path.exists():
        where = f"{config_file(f'{group}/{_chain[-1]}.yaml')}: extends: " if _chain else ""
        raise ConfigError(f"{where}no {group} config named {name!r} ({path} does not exist); "
                          f"available: {', '.join(available(group))}")
    try:
        node = OmegaConf.load(path)
    except Exception as e:  # YAML syntax
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    if isinstance(node, DictConfig):
        node = rename_legacy_keys(node, "" if group == EXPERIMENT else group, str(path))
        if group != EXPERIMENT and isinstance(node.get("override"), DictConfig):  # top-level keys a group file sets
            node.override = rename_legacy_keys(node.override, "", f"{path} (override:)")
    parent = node.pop("extends", None)
    if parent is None:
        return node
    if not isinstance(parent, str) or parent in (*_chain, name):
        raise ConfigError(f"{path}: extends: {parent!r} must name another {group} file, without a cycle "
                          f"({' -> '.join((*_chain, name, str(parent)))})")
    return _extend(_load_group(group, parent, (*_chain, name)), node)


def _extend(base: DictConfig, child: DictConfig) -> DictConfig:
    """`child` over `base`, keys in the order the child's file would list them if it were written out
    in full: a key only the child has goes right after the child's previous key (so the resolved
    config reads exactly as the file did before it was split into a base and an extension)."""
    merged = OmegaConf.merge(base, child)
    order, prev = list(base.keys()), None
    for key in child.keys():
        if key not in order:
            order.insert(order.index(prev) + 1 if prev is not None else 0, key)
        prev = key
    return OmegaConf.create({k: merged._get_node(k) for k in order})


def _typed_group(group: str, name: str, node: DictConfig) -> DictConfig:
    """A group file checked against its part of the schema, so that an error names the file."""
    origin = str(config_file(f"{group}/{name}.yaml"))
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
    """Split `group=name` choices (and `experiment=name`) from other `key=value` overrides, checking the syntax."""
    groups, rest = {}, []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override {item!r} is not key=value (e.g. dataset=digits-cnn optim.lr=3e-4)")
        key, value = item.lstrip("+").split("=", 1)
        if key in (*GROUPS, EXPERIMENT):
            groups[key] = value
        else:
            key = RENAMED_KEYS.get(key, key)
            rest.append(f"{key}={RENAMED_VALUES[key](value) if key in RENAMED_VALUES else value}")
    return groups, rest


def load_config(overrides: list[str] | None = None, base: DictConfig | None = None,
                base_origin: str = "saved run config") -> DictConfig:
    """Compose the training config and check it against the schema (gmnae/config/schema.py).
    `base`: a saved run config to start from (resume)."""
    groups, rest = parse_overrides(list(overrides or []))
    experiment = groups.pop(EXPERIMENT, None)
    if base is not None:
        if experiment:
            raise ConfigError(f"experiment={experiment} starts a new run; a resumed run keeps its saved config "
                              "(override single keys instead)")
        cfg = typed(TrainConfig, rename_legacy_keys(base, "", base_origin), base_origin)
        for group, name in groups.items():
            node = _load_group(group, name)
            node.pop("defaults", None), node.pop("override", None)
            cfg[group] = _typed_group(group, name, node)
            cfg.choices[group] = name
    else:
        root_path = config_file("train.yaml")
        root = rename_legacy_keys(OmegaConf.load(root_path), "", str(root_path))
        choices = dict(root.pop("defaults"))
        recipe, recipe_path = None, None
        if experiment:
            recipe, recipe_path = _load_group(EXPERIMENT, experiment), str(config_file(f"{EXPERIMENT}/{experiment}.yaml"))
            groups = {**_recipe_choices(recipe, recipe_path), **groups}  # the command line's choices win
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
                typed(TrainConfig, tops[g], f"{config_file(f'{g}/{choices[g]}.yaml')} (override:)")
        cfg = typed(TrainConfig, root, str(root_path))
        cfg = OmegaConf.merge(cfg, {g: parts[g] for g in GROUPS}, *[t for t in tops.values() if t])
        if recipe is not None:  # after the groups, before the command line
            cfg = merge_checked(cfg, recipe, TrainConfig, recipe_path)
            choices[EXPERIMENT] = experiment
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


def _recipe_choices(recipe: DictConfig, path: str) -> dict[str, str]:
    """An experiment's `defaults:` (group -> file), checked."""
    chosen = recipe.pop("defaults", None) or {}
    if chosen and not isinstance(chosen, DictConfig) or any(g not in GROUPS for g in chosen):
        raise ConfigError(f"{path}: defaults: must map groups ({', '.join(GROUPS)}) to file names, "
                          f"e.g. defaults: {{dataset: mnist5k-inr, model: scalegmn-inr}}")
    for key in ("choices", "override"):
        if key in recipe:
            raise ConfigError(f"{path}: a recipe sets keys directly (optim: {{lr: 1e-3}}), and groups in its "
                              f"defaults:; remove its '{key}:' block")
    return {str(g): str(n) for g, n in chosen.items()}


def save_config(cfg: DictConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    os.replace(tmp, path)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg)
