"""The training config's schema: one dataclass per group, checked when the config loads.

Every key has a type and a default here; numbers may have a range and strings a set of choices
(`setting(default, ge=..., choices=...)`). `typed(schema, node, origin)` merges a yaml node into its
schema and turns any problem into one ConfigError line that names where it came from, the key, the
bad value and the nearest valid key:

    configs/dataset/foo.yaml: unknown config key 'dataset.zooo' (= 'zoo/foo'); the nearest valid key is 'dataset.zoo'
    command line: data.batch_size = -3 must be >= 1

Adding a key: add a field to the group's dataclass below (and, for a default users should see, the
same key to `configs/train.yaml` or the group's yaml). Adding a group or top-level block: a new
dataclass and a field of `TrainConfig`. Lightning's own arguments (`trainer.*`) stay free-form:
they are checked against `lightning.Trainer.__init__`'s signature, not a list kept here.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from ..errors import ConfigError
from ..weightspace.family import FAMILIES
from ..weightspace.registry import ACTIVATIONS


def setting(default=NO_DEFAULT, *, factory=None, ge=None, gt=None, le=None, lt=None, choices=None, keys=None,
            counts=None):
    """A dataclass field with a check: a range (ge/gt/le/lt), allowed values, or, for a free-form dict,
    `keys=(function listing the allowed keys, what they are)` and `counts={key: least value}` for its integer keys."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, keys=keys, counts=counts).items()
            if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@functools.lru_cache(maxsize=1)
def trainer_arguments() -> list[str]:
    """What `trainer.*` may set: the arguments of `lightning.Trainer`, less those gmnae sets itself."""
    import inspect

    import lightning

    ours = {"self", "callbacks", "logger", "default_root_dir"}
    return [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p not in ours]


# Lightning's integer arguments a typo breaks far from the command line (`max_epochs=abc`: a TypeError deep in
# Lightning; `max_epochs=-1`, Lightning's "endless", leaves the lr schedule no length): key -> least value.
TRAINER_COUNTS = {"max_epochs": 0, "min_epochs": 0, "max_steps": -1, "min_steps": 0, "check_val_every_n_epoch": 1,
                  "log_every_n_steps": 1, "accumulate_grad_batches": 1, "num_nodes": 1, "num_sanity_val_steps": -1}


# ---- groups ------------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(0.01, ge=0)
    warmup_steps: int = setting(1000, ge=0)
    schedule: str = setting("constant", choices=("constant", "cosine"))
    min_lr_ratio: float = setting(0.05, ge=0, le=1)


@dataclass
class DataConfig:
    batch_size: int = setting(64, ge=1)
    val_batch_size: Optional[int] = setting(None, ge=1)
    num_workers: int = setting(0, ge=0)
    shuffle_buffer: int = setting(1024, ge=1)
    pin_memory: Any = setting("auto", choices=("auto", True, False))
    limit_train_networks: Optional[int] = setting(None, ge=1)


@dataclass
class LossConfig:
    temperature: float = setting(4.0, gt=0)
    task_batch: int = setting(128, ge=1)
    # CNN: weight of the agreement term, cross-entropy of the decoded network against its teacher's predicted
    # class (T = 1); the soft-label KL alone lets the decoder settle on one good network for all teachers
    hard_weight: float = setting(0.0, ge=0)
    # CNN: fraction of the distillation images replaced by blends λ·x1 + (1−λ)·x2 of two task images,
    # λ ~ U(0, 1) (function matching): off the data, teachers differ and "be correct" no longer fits them all
    mixup: float = setting(0.0, ge=0, le=1)
    # CNN: weight of the MSE between the decoded and the teacher's centred logits (T = 1): matches the teacher's
    # margins on every image, mistakes included, where the KL at T > 1 mostly sees the classes all teachers agree on
    logit_weight: float = setting(0.0, ge=0)
    # weight of the invariant parameter term: the input aligned to its decoded network by weight matching
    # (the largest group its activation allows: scale-normalised + wm for ReLU, wm-signed for tanh/sine), then the
    # relative squared error per tensor. The canonicalization the paper claims, made explicit (losses.aligned_param_distance)
    param_weight: float = setting(0.0, ge=0)
    param_match_iter: int = setting(10, ge=1)  # weight-matching sweeps per step for the parameter term


@dataclass
class EvaluationConfig:
    every_n_val_epochs: int = setting(5, ge=0)
    pairs_per_type: int = setting(8, ge=1)  # pairs per pair type (orbit-P, ..., independent)
    lambdas: int = setting(25, ge=2)
    noise_std: float = setting(0.005, ge=0)
    max_iter: int = setting(100, ge=1)
    reconstructions: int = setting(8, ge=0)
    finetune_steps: int = setting(0, ge=0)
    enabled: bool = True


@dataclass
class CheckpointConfig:
    monitor: str = "val/loss"
    mode: str = setting("min", choices=("min", "max"))
    save_top_k: int = setting(1, ge=-1)
    every_n_train_steps: Optional[int] = setting(None, ge=1)


@dataclass
class DatasetConfig:
    """A `configs/dataset/<name>.yaml` (less its `defaults:` and `override:` blocks, see gmnae/config/load.py)."""

    name: str = MISSING
    family: str = setting(MISSING, choices=tuple(FAMILIES))  # the networks: SIRENs or CNN classifiers (weightspace/family.py)
    zoo: str = MISSING                  # the zoo folder; saved configs hold it absolute
    architecture: Optional[str] = None  # layer shapes the zoo must have (gmnae.weightspace.named_architecture)
    build: Optional[str] = None         # built-in forge that `make train` / `gmnae zoo build` may run
    activation: Optional[str] = setting(None, choices=ACTIVATIONS)  # the registry's (weightspace/registry.py)
    data_root: Optional[str] = None
    resolution: int = setting(28, ge=1)


@dataclass
class EncoderSchema:
    """`model.encoder`: the fields of gmnae.nn.EncoderConfig (a test keeps the two in step)."""

    d: int = setting(128, ge=1)
    n_layers: int = setting(4, ge=1)
    latent_dim: int = setting(128, ge=1)
    symmetry: str = setting("auto", choices=("auto", "permutation", "sign", "scale", "hetero"))
    bidirectional: bool = False
    path: str = setting("dense", choices=("dense", "edge"))
    mlp_layers: int = setting(2, ge=1)
    edge_mlp_layers: int = setting(1, ge=1)
    activation: str = setting("silu", choices=("silu", "relu", "gelu", "tanh"))
    layer_norm: bool = True
    dropout: float = setting(0.2, ge=0, lt=1)
    aggregation: str = setting("sum", choices=("sum", "mean"))
    skip: bool = True
    canon_eps: float = setting(1e-8, gt=0)
    input_scale: str = setting("none", choices=("none", "layer-rms"))
    phase_canonical: bool = False
    chunk_size: Optional[int] = setting(None, ge=0)
    edge_kernel: str = setting("auto", choices=("auto", "torch"))
    compile: bool = False


@dataclass
class DecoderConfig:
    type: str = setting("mlp", choices=("mlp",))  # gmnae/nn/decoder.py DECODERS
    standardize: bool = True
    hidden: List[int] = setting(factory=lambda: [128, 256])


@dataclass
class ProbeConfig:
    points: int = setting(0, ge=0)
    hidden: int = setting(128, ge=1)


@dataclass
class ModelConfig:
    name: str = MISSING
    encoder: EncoderSchema = setting(factory=EncoderSchema)
    decoder: DecoderConfig = setting(factory=DecoderConfig)
    probe: ProbeConfig = setting(factory=ProbeConfig)


@dataclass
class TrainConfig:
    seed: int = setting(0, ge=0)
    mode: str = setting("fit", choices=("fit", "validate"))
    task: str = setting("autoencode", choices=("autoencode", "classify", "predict-accuracy"))
    baselines: bool = True  # classify / predict-accuracy: fit the baselines (gmnae/evaluation/baselines.py) in the same run
    runs_dir: str = "runs"
    run_name: Optional[str] = None
    ckpt_path: Optional[str] = None
    threads: Optional[int] = setting(None, ge=1)  # torch CPU threads; null: chosen (gmnae/threads.py)
    optim: OptimConfig = setting(factory=OptimConfig)
    data: DataConfig = setting(factory=DataConfig)
    loss: LossConfig = setting(factory=LossConfig)
    evaluation: EvaluationConfig = setting(factory=EvaluationConfig)
    checkpoint: CheckpointConfig = setting(factory=CheckpointConfig)
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    model: ModelConfig = setting(factory=ModelConfig)
    trainer: Dict[str, Any] = setting(factory=dict, keys=(trainer_arguments, "the arguments of lightning.Trainer"),
                                      counts=TRAINER_COUNTS)
    choices: Dict[str, str] = setting(factory=dict)  # group -> the file chosen (dataset=NAME ...)


# ---- checking ----------------------------------------------------------------------------------
def typed(schema: type, node, origin: str, prefix: str = "") -> DictConfig:
    """`node` merged into the defaults of `schema`; every problem is one ConfigError line naming `origin`.
    `prefix`: where `node` sits in the whole config (e.g. "dataset"), for the key named in messages."""
    base = OmegaConf.structured(schema)
    try:
        out = OmegaConf.merge(base, node)
    except OmegaConfBaseException as e:
        raise _explain(e, schema, node, origin, prefix) from None
    check_values(out, schema, origin, prefix)
    return out


def merge_checked(cfg: DictConfig, node, schema: type, origin: str) -> DictConfig:
    """A typed config with `node` (e.g. the command line's overrides) merged in, checked the same way."""
    try:
        out = OmegaConf.merge(cfg, node)
    except OmegaConfBaseException as e:
        raise _explain(e, schema, node, origin, "") from None
    check_values(out, schema, origin, "")
    return out


def _dotted(*parts) -> str:
    return ".".join(str(p) for p in parts if p not in (None, ""))


def _schema_at(schema: type, path: list[str]):
    """The dataclass (or None for free-form dicts) at a dotted path below `schema`."""
    for name in path:
        f = {f.name: f for f in fields(schema)}.get(name) if is_dataclass(schema) else None
        if f is None:
            return None
        default = f.default_factory() if f.default_factory is not NO_DEFAULT else f.default
        schema = type(default) if is_dataclass(default) else None
    return schema


def _explain(e: OmegaConfBaseException, schema: type, node, origin: str, prefix: str) -> ConfigError:
    full = e.full_key or _scalar_for_block(schema, node) or ""
    parts = full.replace("[", ".").replace("]", "").split(".") if full else []
    key = _dotted(prefix, full)
    try:
        value = OmegaConf.select(OmegaConf.create(node) if not isinstance(node, DictConfig) else node, full)
    except Exception:
        value = None
    if isinstance(e, ConfigKeyError):
        parent = _schema_at(schema, parts[:-1])
        valid = [f.name for f in fields(parent)] if parent else []
        near = difflib.get_close_matches(parts[-1], valid, n=1, cutoff=0.0) if valid else []
        hint = (f"; the nearest valid key is '{_dotted(prefix, *parts[:-1], near[0])}'" if near else "")
        shown = f" (= {value!r})" if value is not None and not isinstance(value, DictConfig) else ""
        return ConfigError(f"{origin}: unknown config key '{key}'{shown}{hint}")
    want = _expected_type(schema, parts)
    if not want:
        return ConfigError(f"{origin}: {key or 'config'}: {str(e).splitlines()[0]}")
    default = _default_at(schema, parts)
    scalar = isinstance(default, (int, float, str, list)) and default != MISSING
    example = f" (e.g. {key}={_yaml(default)}, the default)" if scalar else ""
    return ConfigError(f"{origin}: {key} = {value if value is not None else getattr(e, 'value', None)!r} "
                       f"is not {want}{example}")


def _yaml(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value).replace(" ", "")


def _scalar_for_block(schema: type, node) -> str | None:
    """The key of `node` that holds a plain value where the schema has a block (OmegaConf does not say)."""
    if not isinstance(node, (dict, DictConfig)):
        return None
    for k, v in node.items():
        sub = _schema_at(schema, [str(k)])
        if sub is not None:
            if not isinstance(v, (dict, DictConfig)):
                return str(k)
            inner = _scalar_for_block(sub, v)
            if inner:
                return f"{k}.{inner}"
    return None


def _default_at(schema: type, parts: list[str]):
    parent = _schema_at(schema, parts[:-1])
    f = {f.name: f for f in fields(parent)}.get(parts[-1]) if parent and parts else None
    if f is None:
        return None
    return f.default_factory() if f.default_factory is not NO_DEFAULT else f.default


def _expected_type(schema: type, parts: list[str]) -> str | None:
    parent = _schema_at(schema, parts[:-1])
    f = {f.name: f for f in fields(parent)}.get(parts[-1]) if parent and parts else None
    if f is None:
        return "a list of integers" if len(parts) > 1 and parts[-1].isdigit() else None
    t = str(f.type).replace("Optional[", "").rstrip("]")
    names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
    if t in names:
        return names[t] + (" or null" if "Optional" in str(f.type) else "")
    if t.startswith("List[int"):
        return "a list of integers, e.g. [128,256]"
    return f"a block: set its keys one by one ({_dotted(*parts)}.KEY=VALUE)"


def check_values(cfg: DictConfig, schema: type, origin: str, prefix: str = "") -> None:
    """Ranges, choices and the keys of free-form dicts, for every set value of `cfg`."""
    for f in fields(schema):
        if f.name not in cfg or OmegaConf.is_missing(cfg, f.name):
            continue
        value, key, m = cfg[f.name], _dotted(prefix, f.name), f.metadata
        sub = _schema_at(schema, [f.name])
        if sub is not None and isinstance(value, DictConfig):
            check_values(value, sub, origin, key)
            continue
        if value is None:
            continue
        if "keys" in m:
            allowed, describe = m["keys"]
            valid = allowed()
            for k in value:
                if k not in valid:
                    near = difflib.get_close_matches(str(k), valid, n=1, cutoff=0.0)
                    raise ConfigError(f"{origin}: unknown config key '{key}.{k}' (= {value[k]!r}); the nearest "
                                      f"valid key is '{key}.{near[0]}' ({key}.* takes {describe})")
        for k, least in m.get("counts", {}).items():
            if value.get(k) is None:
                continue
            if isinstance(value[k], bool) or not isinstance(value[k], int):
                raise ConfigError(f"{origin}: {key}.{k} = {value[k]!r} is not an integer (e.g. {key}.{k}=5)")
            if value[k] < least:
                raise ConfigError(f"{origin}: {key}.{k} = {value[k]!r} must be >= {least}")
        if "choices" in m and value not in m["choices"]:
            shown = [_yaml(c) for c in m["choices"]]
            near = difflib.get_close_matches(str(value), shown, n=1, cutoff=0.0)
            raise ConfigError(f"{origin}: {key} = {value!r} must be one of {', '.join(shown)}"
                              + (f" (nearest: {key}={near[0]})" if near else ""))
        for op, ok, text in (("ge", lambda a, b: a >= b, ">="), ("gt", lambda a, b: a > b, ">"),
                             ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<")):
            if op in m and not ok(value, m[op]):
                raise ConfigError(f"{origin}: {key} = {value!r} must be {text} {m[op]}")


def check_complete(cfg: DictConfig, schema: type, origin: str, prefix: str = "") -> None:
    """Keys without a default that no file set (e.g. a dataset file without `zoo:`)."""
    for f in fields(schema):
        key = _dotted(prefix, f.name)
        if OmegaConf.is_missing(cfg, f.name):
            raise ConfigError(f"{origin}: {key} is not set; add `{f.name}: ...` to it")
        sub = _schema_at(schema, [f.name])
        if sub is not None and isinstance(cfg[f.name], DictConfig):
            check_complete(cfg[f.name], sub, origin, key)
