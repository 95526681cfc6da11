"""Network files for `gmnae merge`: state dicts in, flat parameter vectors of an architecture, state dicts out.

A state dict's floating-point tensors, in order, are the flat layout (layer by layer, weight then bias);
its architecture comes from `--arch` / `--zoo`, else from the file: the one it records (`gmnae zoo export`), or
the one its keys and shapes name unambiguously (MNIST-INR's `seq.{0,1,2}.{weight,bias}` is the SIREN). Every check stops with one line
naming the file and the fix.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GmnaeError
from ..weightspace.registry import ACTIVATIONS

MNIST_INR_KEYS = ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise GmnaeError(f"{path}: no such file; pass the path of a state dict saved with torch.save(model.state_dict(), path)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle / zip / torch errors: all mean "not a readable state dict"
        raise GmnaeError(f"{path}: cannot be read as a PyTorch state dict ({type(e).__name__}); "
                         "save it with torch.save(model.state_dict(), path)") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise GmnaeError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors; "
                         "save it with torch.save(model.state_dict(), path)")
    for key, v in obj.items():
        if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all():
            raise GmnaeError(f"{path}: tensor {key!r} has NaN or Inf values; merge only finite networks "
                             "(pick another checkpoint or retrain)")
    return obj


def float_items(state: dict) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()]


def check_same_layout(path_a: str, sa: dict, path_b: str, sb: dict) -> None:
    fa, fb = float_items(sa), float_items(sb)
    if [k for k, _ in fa] != [k for k, _ in fb]:
        missing = sorted(set(k for k, _ in fa) ^ set(k for k, _ in fb))
        detail = f"keys differ ({', '.join(missing[:4])})" if missing else "keys come in a different order"
        raise GmnaeError(f"{path_b} does not match {path_a}: {detail}; merge two networks of the same architecture")
    for (k, va), (_, vb) in zip(fa, fb):
        if va.shape != vb.shape:
            raise GmnaeError(f"{path_b} does not match {path_a}: {k!r} has shape {tuple(vb.shape)} vs "
                             f"{tuple(va.shape)}; merge two networks of the same architecture")


def recorded_architecture(path: str):
    """The architecture a file written by `gmnae zoo export` records, else None."""
    import json

    from ..weightspace import Architecture

    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    recorded = obj.get("architecture") if isinstance(obj, dict) else None
    if not isinstance(recorded, str):
        return None
    try:
        return Architecture.from_dict(json.loads(recorded))
    except (ValueError, TypeError, KeyError) as e:
        raise GmnaeError(f"{path}: its 'architecture' entry cannot be read ({type(e).__name__}); "
                         "pass --arch NAME or --arch ZOO_DIR") from e


def infer_architecture(path: str, state: dict):
    """The architecture a state dict's keys and shapes name unambiguously, else a GmnaeError."""
    from ..weightspace import Architecture

    items = float_items(state)
    keys, shapes = [k for k, _ in items], [tuple(v.shape) for _, v in items]
    siren = Architecture.siren()
    if keys == MNIST_INR_KEYS and shapes == [tuple(s) for _, s in siren.param_shapes]:
        return siren
    listing = ", ".join(f"{k} {list(s)}" for k, s in list(zip(keys, shapes))[:4])
    raise GmnaeError(f"{path}: cannot tell the architecture from its tensors ({listing}, ...); pass --arch NAME "
                     "(siren, small-cnn-relu, small-cnn-tanh, digits-cnn-*, mnist5k-cnn-*) or --arch ZOO_DIR")


def resolve_architecture(path: str, state: dict, *, arch: str | None = None, zoo: str | None = None,
                         activation: str | None = None):
    """(architecture with a concrete activation, zoo or None) of the network file `path` (its state dict `state`):
    from `arch` (a name or a zoo folder: --arch), else the `zoo` folder (--zoo), else the file; `activation`
    (--activation) picks one of a mixed architecture's activations."""
    from ..weightspace import named_architecture
    from ..zoo import Zoo

    arch_name = arch
    zoo = Zoo(zoo) if zoo else None
    if arch_name:
        if Path(arch_name).is_dir():
            zoo_arch = Zoo(arch_name)
            zoo = zoo or zoo_arch
            arch = zoo_arch.arch
        else:
            try:
                arch = named_architecture(arch_name)
            except ValueError as e:
                raise GmnaeError(f"--arch {arch_name}: {e}") from e
    elif zoo is not None:
        arch = zoo.arch
    else:  # what the file records (gmnae zoo export), else what its keys and shapes name
        arch = recorded_architecture(path) or infer_architecture(path, state)
    if activation:
        if arch.activation not in ("mixed", activation):
            raise GmnaeError(f"--activation {activation} contradicts the architecture's {arch.activation}; "
                             "drop --activation or pick the matching --arch")
        arch = arch.with_activation(activation)
    if arch.activation == "mixed":
        raise GmnaeError(f"{arch.name or 'this zoo'} mixes activations: pass --activation NAME for these networks "
                         f"({'|'.join(ACTIVATIONS)})")
    return arch, zoo


def flat_params(arch, path: str, state: dict) -> torch.Tensor:
    items = float_items(state)
    want = [tuple(s) for _, s in arch.param_shapes]
    got = [tuple(v.shape) for _, v in items]
    if got != want:
        raise GmnaeError(f"{path}: tensor shapes {got[:4]}... do not fit {arch.describe()} (expects {want[:4]}...); "
                         "pass the right --arch")
    return torch.cat([v.detach().reshape(-1).to(torch.float64) for _, v in items])


def state_from_flat(template: dict, flat: torch.Tensor) -> dict:
    """A's state dict with its floating tensors replaced from `flat` (keys, order, dtypes kept)."""
    out, pos = {}, 0
    for k, v in template.items():
        if torch.is_tensor(v) and v.is_floating_point():
            n = v.numel()
            out[k] = flat[pos:pos + n].view(v.shape).to(v.dtype).clone()
            pos += n
        else:
            out[k] = v
    return out
