"""CNN autoencoder fidelity before and after the functional fine-tune towards each network's own teacher.

    python -m experiments.merge_finetune.cnn runs/NAME/checkpoints/last.ckpt zoo/digits-cnn [networks per activation]

For each activation of the test split: agreement of each decoded network with its own teacher and
with another network's teacher (held-out task images), after 0 / 25 / 100 Adam steps towards the own
teacher's class probabilities on 1,024 train task images (gmnae/merge/finetune.py); the latent-blind
decoder (the mean latent decoded) gets the same steps as the control — what the decoded start is worth.
"""
from __future__ import annotations

import json
import sys

import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.evaluation.fidelity import cnn_fidelity, other_indices
from gmnae.merge.finetune import finetune_to_parents
from gmnae.tasks.classification import task_images
from gmnae.weightspace.registry import code_of
from gmnae.zoo import Zoo


def main(ckpt: str, zoo_dir: str, per_activation: int = 96) -> dict:
    model = WeightSpaceAutoencoder.load_from_checkpoint(ckpt, map_location="cpu").eval()
    zoo = Zoo(zoo_dir)
    params, acts = torch.from_numpy(zoo.read_params("test")).float(), zoo.activations("test")
    x, y = task_images(zoo.task, "test")
    x_train = task_images(zoo.task, "train")[0][:1024]
    out = {}
    for act in sorted(set(acts)):
        teachers = params[torch.tensor([a == act for a in acts])][:per_activation]
        arch, other = zoo.arch.with_activation(act), other_indices(torch.arange(len(teachers)))
        with torch.no_grad():
            z = model.encode(teachers, torch.full((len(teachers),), code_of(act)))
            starts = {"decoded": model.decode(z), "blind": model.decode(z.mean(0, keepdim=True)).expand(len(z), -1)}
        weights = torch.ones(len(teachers), 1)
        for steps in (0, 25, 100):
            row = {}
            for name, start in starts.items():
                tuned = finetune_to_parents(arch, start, teachers[:, None], weights, x_train, steps, activation=act)
                f = cnn_fidelity(arch, teachers, tuned, x, y, act, other)
                row.update({f"{name}_own": f["agreement_own"], f"{name}_other": f["agreement_other"],
                            f"{name}_accuracy": f["accuracy_decoded"]})
            out[f"{act}/ft{steps}"] = row
            print(act, steps, {k: round(v, 3) for k, v in row.items()}, file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    torch.set_num_threads(1)
    print(json.dumps(main(sys.argv[1], sys.argv[2], *(int(x) for x in sys.argv[3:])), indent=1))
