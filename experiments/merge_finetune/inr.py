"""INR fidelity of an autoencoder and of two-network merges, before and after the functional fine-tune.

    python -m experiments.merge_finetune.inr runs/NAME/checkpoints/last.ckpt zoo/digits-inr [n_pairs]

On the test split's independent pairs (two INRs of one image from different seeds), prints JSON with
PSNR (dB) of: each decoded network against its own original's rendering, after 10/25/50 fine-tune
steps towards that rendering, and the control — a fresh initialisation fitted for 25 steps; and the
midpoint λ = 0.5 of naive, wm-signed, ae (decoded mean latent) and ae-endpoints (mean of the decoded
endpoints; gmnae/merge/methods.py; before the method table these were called ae-latent and ae) against the parents' mean rendering, each before and after 25 steps (gmnae/merge/finetune.py).
"""
from __future__ import annotations

import json
import sys

import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.merge.finetune import finetune_to_function, finetune_to_parents
from gmnae.merge.interpolation import method_path
from gmnae.merge.pairs import zoo_pairs
from gmnae.tasks.grid import coordinate_grid, psnr
from gmnae.weightspace import siren_render
from gmnae.zoo import Zoo
from gmnae.zoo.inr_forge import dwsnets_init


def main(ckpt: str, zoo_dir: str, n_pairs: int = 100) -> dict:
    zoo = Zoo(zoo_dir)
    arch, grid = zoo.arch, coordinate_grid(int((zoo.task or {}).get("resolution", 28)))
    model = WeightSpaceAutoencoder.load_from_checkpoint(ckpt, map_location="cpu").eval()
    pairs = zoo_pairs(zoo, "test", "independent", n_pairs=n_pairs, seed=0)
    a, b = pairs.a.float(), pairs.b.float()

    def render(p):
        return siren_render(arch, p, grid).squeeze(-1)

    def quality(p, target):
        with torch.no_grad():
            return float(psnr((render(p) - target).pow(2).mean(1)).mean())

    out = {"pairs": len(a)}
    with torch.no_grad():
        ra, rb = render(a), render(b)
        za, zb = model.encode(a), model.encode(b)
        da, db = model.decode(za), model.decode(zb)
    both, own = torch.cat([da, db]), torch.cat([ra, rb])
    out["parent_b_vs_parent_a"] = quality(b, ra)
    out["decoded_vs_own"] = quality(both, own)
    for steps in (10, 25, 50):
        out[f"decoded+ft{steps}_vs_own"] = quality(finetune_to_function(arch, both, own.unsqueeze(-1), grid, steps), own)
    fresh = dwsnets_init(arch, list(range(len(own))))
    out["fresh_init+ft25_vs_own"] = quality(finetune_to_function(arch, fresh, own.unsqueeze(-1), grid, 25), own)

    lam = torch.tensor([0.5])
    with torch.no_grad():
        mids = {"naive": method_path(arch, a, b, "naive", lam)[:, 0],
                "wm-signed": method_path(arch, a, b, "wm-signed", lam)[:, 0],
                "ae": model.decode(0.5 * (za + zb)), "ae-endpoints": 0.5 * (da + db)}
    parents, weights, target = torch.stack([a, b], 1), torch.full((len(a), 2), 0.5), 0.5 * (ra + rb)
    for name, mid in mids.items():
        out[f"midpoint_{name}"] = quality(mid, target)
        out[f"midpoint_{name}+ft25"] = quality(finetune_to_parents(arch, mid, parents, weights, grid, 25), target)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    torch.set_num_threads(1)
    print(json.dumps(main(sys.argv[1], sys.argv[2], *(int(x) for x in sys.argv[3:])), indent=1))
