"""`gmnae zoo export`: one network of a zoo as a state dict file, the input `gmnae merge` reads.

    gmnae zoo export zoo/digits-inr --index 0 --out a.pt
    gmnae zoo export zoo/digits-inr --index 1 --out b.pt
    gmnae merge a.pt b.pt --method wm-signed --out merged.pt      # no --arch: the files say it

The file is `torch.save({"state_dict": ..., "architecture": ..., "source": ...})`: the parameters in the
zoo's flat layout as `layers.{i}.weight|bias` tensors (PyTorch shapes, float32), the architecture as the
zoo manifest's JSON (with the network's own activation when the zoo mixes them), and where it came from.
`torch.load(path)["state_dict"]` loads into any module of that layout.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import GmnaeError, check_writable
from .format import Zoo


def export_network(zoo_dir, index: int, out, split: str = "train") -> Path:
    """Write network `index` of `split` of the zoo to `out`; returns `out`."""
    import torch

    zoo = Zoo(zoo_dir)
    if split not in zoo.splits:
        raise GmnaeError(f"--split {split}: {zoo.root} has the splits {', '.join(zoo.splits)}")
    count = zoo.count(split)
    if not 0 <= index < count:
        raise GmnaeError(f"--index {index}: split {split} of {zoo.root} has networks 0..{count - 1}")
    out = Path(out)
    check_writable(out.parent, f"--out {out}")
    flat = torch.from_numpy(zoo.read_params(split, limit=index + 1)[index])
    arch = zoo.arch.with_activation(zoo.activations(split)[index]) if zoo.arch.activation == "mixed" else zoo.arch
    state, pos = {}, 0
    for name, shape in arch.param_shapes:
        n = int(torch.Size(shape).numel())
        state[name] = flat[pos:pos + n].reshape(shape).clone()
        pos += n
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"state_dict": state, "architecture": json.dumps(arch.to_dict()),
                "source": {"zoo": str(zoo.root.resolve()), "split": split, "index": index}}, tmp)
    tmp.replace(out)
    return out


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("zoo", help="zoo folder")
    p.add_argument("--index", type=int, required=True, help="the network's row in its split (0-based)")
    p.add_argument("--split", default="train", help="train, val or test (default train)")
    p.add_argument("--out", required=True, help="state dict file to write (e.g. a.pt)")


def run_export(args) -> int:
    out = export_network(args.zoo, args.index, args.out, split=args.split)
    print(f"network {args.index} of {args.split} -> {out} (gmnae merge reads its architecture from the file)")
    return 0
