"""Target images of INR zoos: what an INR's rendering is compared with.

Returns None when the zoo has no target images (e.g. MNIST-INR imported without a local MNIST
copy): then losses compare against the rendering of the original INR instead.
"""
from __future__ import annotations

import numpy as np
import torch


def inr_targets(task: dict, meta: dict[str, np.ndarray], zoo_root=None) -> torch.Tensor | None:
    """`[N, H*W]` targets for the networks described by `meta` (one zoo split's metadata)."""
    name = task.get("name")
    if name == "digits":
        from . import digits

        return digits.inr_targets(task.get("resolution", 28))[torch.from_numpy(meta["image_index"])]
    if name == "mnist5k":
        from . import mnist5k

        return mnist5k.inr_targets()[torch.from_numpy(meta["image_index"])]
    if name in ("mnist", "fmnist"):  # images stored in the zoo folder (imported or built from IDX files)
        from . import mnist

        return mnist.inr_targets(task, meta, zoo_root)
    return None
