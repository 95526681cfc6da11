"""Task images for CNN zoos: what the distillation loss and the evaluation feed the networks.

`task_images(task, split, data_root)` dispatches on the zoo manifest's task name. Splits are
"train" (the distillation loss trains on these) and "test" (held out, for evaluation).
"""
from __future__ import annotations

import torch

from ..errors import GmnaeError


def task_images(task: dict, split: str, data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images `[N, C, H, W]`, labels `[N]`) of a zoo's classification task."""
    name = task.get("name")
    if name == "digits":
        from . import digits

        return digits.classification_images(split, task.get("split_seed", 0))
    if name == "mnist5k":
        from . import mnist5k

        return mnist5k.classification_images(split, task.get("split_seed", 0))
    if name == "cifar10":
        from . import cifar10

        return cifar10.grayscale_images(data_root, split)
    raise GmnaeError(f"no image loader for task {name!r}")
