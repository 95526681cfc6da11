"""Fidelity of an autoencoder: does dec(enc(θ)) reproduce *its own* input θ, or one good network for all?

A low merge barrier between decoded networks says little when the decoder emits nearly the same
network whatever goes in. These measures compare each decoded network with its own original and
with *another* network's original; the gap between the two is the autoencoder's specificity.

    other = other_indices(groups)                       # for each i a j with groups[j] != groups[i]
    cnn_fidelity(arch, teachers, decoded, x, y, act)    # agreement / KL own vs other / similar, accuracy τ, |Δ|
    split_fidelity(model, params, codes, x, y, act)     # the same on a whole split, beside the latent-blind decoder
    inr_fidelity(renderings, decoded_renderings, other) # PSNR own vs other

CNN measures (on held-out task images; the teacher is the original network):
  agreement_own    fraction of images where argmax(decoded_i) == argmax(teacher_i)
  agreement_other  the same against teacher_j, j another network (its `other` index)
  kl_own / kl_other  KL(softmax(teacher) || softmax(decoded)) at temperature 1, mean over images
  agreement_similar / kl_similar  the same against teacher_j of *similar accuracy* (the nearest other teacher
                   accuracy on these images; `similar_within`: the fraction within ± 0.02): a good generic
                   network agrees with any teacher as much as with its own, so only own − similar measures
                   that the decoder reproduced *this* network's decisions
  accuracy_teacher / accuracy_decoded; accuracy_corr (Pearson), accuracy_tau (Kendall τ-b) and
                   accuracy_abs_delta (mean |acc_decoded − acc_teacher|) of the two over networks
INR measures: psnr_own = PSNR(render(decoded_i), render(θ_i)), psnr_other against render(θ_j) of a
different image. A latent-blind baseline (the decoder fed one fixed latent) gets the same measures:
an autoencoder that ignores its input scores agreement_own ≈ agreement_other.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..weightspace import Architecture, cnn_forward

# Elements of the largest activation tensor one forward chunk may hold (as in merge/interpolation.py).
_BUDGET = 2**25


def other_indices(groups: torch.Tensor) -> torch.Tensor:
    """For each i, the next index j (cyclically) with groups[j] != groups[i].

    Groups mark networks that count as "the same" (an INR pair of one image); with all groups distinct
    this is the cyclic shift i -> i + 1. Raises when every network is in one group."""
    groups = torch.as_tensor(groups)
    n = len(groups)
    out = torch.empty(n, dtype=torch.long)
    for i in range(n):
        for step in range(1, n):
            j = (i + step) % n
            if groups[j] != groups[i]:
                out[i] = j
                break
        else:
            raise ValueError("fidelity needs networks of at least two groups to compare against another network")
    return out


def cnn_logits(arch: Architecture, params: torch.Tensor, images: torch.Tensor, activation=None,
               budget: int = _BUDGET) -> torch.Tensor:
    """Logits `[n, N, C]` of n CNNs on images, in chunks of networks (activation: a name or one per network)."""
    x = images.to(params.device, params.dtype)
    per_net = x.shape[0] * x[0].numel() * max(l.n_out for l in arch.layers)
    step = max(1, budget // per_net)
    out = []
    for s in range(0, len(params), step):
        act = activation if activation is None or isinstance(activation, str) else list(activation)[s:s + step]
        out.append(cnn_forward(arch, params[s:s + step], x, act))
    return torch.cat(out)


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax p || softmax q) per network, mean over images: `[n, N, C]` -> `[n]`."""
    lp, lq = F.log_softmax(p_logits.double(), -1), F.log_softmax(q_logits.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1).mean(-1)


def similar_indices(values: torch.Tensor) -> torch.Tensor:
    """For each i the j != i whose value is nearest (ties: the lowest index). Needs two values or more."""
    v = torch.as_tensor(values).double()
    if len(v) < 2:
        raise ValueError("fidelity needs at least two networks to compare against another network")
    d = (v[:, None] - v[None, :]).abs()
    d.fill_diagonal_(float("inf"))
    return d.argmin(1)


def kendall_tau(a: torch.Tensor, b: torch.Tensor) -> float:
    """Kendall's τ-b of two vectors (ties in either counted as in scipy.stats.kendalltau); nan when either is
    constant. O(n²) pairs: meant for the few hundred networks of a split."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    i, j = torch.triu_indices(len(a), len(a), 1)
    sa, sb = torch.sign(a[i] - a[j]), torch.sign(b[i] - b[j])
    den = torch.sqrt((sa != 0).sum().double() * (sb != 0).sum().double())
    return float((sa * sb).sum() / den) if den > 0 else float("nan")


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two vectors; nan when either is constant."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = a.norm() * b.norm()
    return float((a @ b) / den) if den > 0 else float("nan")


@torch.no_grad()
def cnn_fidelity(arch: Architecture, teachers: torch.Tensor, decoded: torch.Tensor, images: torch.Tensor,
                 labels: torch.Tensor, activation=None, other: torch.Tensor | None = None) -> dict[str, float]:
    """Agreement and KL of each decoded network with its own teacher, with `other`'s (default: i + 1) and with
    the teacher of the most similar accuracy; how well decoded accuracy tracks teacher accuracy."""
    n = len(teachers)
    other = other_indices(torch.arange(n)) if other is None else torch.as_tensor(other)
    t = cnn_logits(arch, teachers, images, activation)
    s = cnn_logits(arch, decoded, images, activation)
    y = labels.to(t.device).long()
    tp, sp = t.argmax(-1), s.argmax(-1)
    acc_t, acc_s = (tp == y).double().mean(1), (sp == y).double().mean(1)
    similar = similar_indices(acc_t)
    return {
        "agreement_own": float((sp == tp).double().mean()),
        "agreement_similar": float((sp == tp[similar]).double().mean()),
        "agreement_other": float((sp == tp[other]).double().mean()),
        "kl_own": float(_kl(t, s).mean()),
        "kl_similar": float(_kl(t[similar], s).mean()),
        "kl_other": float(_kl(t[other], s).mean()),
        "accuracy_teacher": float(acc_t.mean()),
        "accuracy_decoded": float(acc_s.mean()),
        "accuracy_abs_delta": float((acc_s - acc_t).abs().mean()),
        "accuracy_corr": pearson(acc_s, acc_t),
        "accuracy_tau": kendall_tau(acc_s, acc_t),
        "similar_within": float(((acc_t[similar] - acc_t).abs() <= 0.02 + 1e-12).double().mean()),
    }


@torch.no_grad()
def split_fidelity(model, params: torch.Tensor, codes: torch.Tensor | None, images: torch.Tensor,
                   labels: torch.Tensor, activation=None, batch: int = 256) -> dict[str, dict[str, float]]:
    """`cnn_fidelity` of an autoencoder on many networks (a whole split), beside its latent-blind decoder (the
    mean latent of these networks, decoded once for all): {"": measures, "blind_": measures}.

    `codes`: per-network activation codes (mixed zoos; None otherwise), `activation` as for `cnn_fidelity`."""
    device, dtype = model.device, next(model.parameters()).dtype
    z = torch.cat([model.encode(params[s:s + batch].to(device, dtype),
                                None if codes is None else codes[s:s + batch].to(device))
                   for s in range(0, len(params), batch)])
    decoded = torch.cat([model.decode(z[s:s + batch]) for s in range(0, len(z), batch)])
    blind = model.decode(z.mean(0, keepdim=True)).expand(len(z), -1)
    teachers = params.to(device, dtype)
    out = {"": cnn_fidelity(model.arch, teachers, decoded, images, labels, activation),
           "blind_": cnn_fidelity(model.arch, teachers, blind, images, labels, activation)}
    for k in ("accuracy_corr", "accuracy_tau"):  # one network for all: no correlation to speak of
        out["blind_"].pop(k)
    return out


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of renderings in [0, 1], per row: `[n, D]` x `[n, D]` -> `[n]`."""
    return 10 * torch.log10(1.0 / (a.double() - b.double()).pow(2).mean(-1).clamp_min(1e-12))


@torch.no_grad()
def inr_fidelity(original: torch.Tensor, decoded: torch.Tensor, other: torch.Tensor | None) -> dict[str, float]:
    """PSNR of each decoded rendering against its own original's rendering and against `other`'s
    (None: no other image to compare with, only `psnr_own`)."""
    out = {"psnr_own": float(psnr(decoded, original).mean())}
    if other is not None:
        out["psnr_other"] = float(psnr(decoded, original[torch.as_tensor(other)]).mean())
    return out


def zoo_split_fidelity(model, zoo, split: str, data_root: str | None = None, limit: int | None = None,
                       only_activation: str | None = None) -> dict[str, float]:
    """`split_fidelity` on (up to `limit` of) the networks of a CNN zoo's split, on the task's held-out images: one
    table per activation and, for a mixed zoo, one over all networks (the similar-accuracy teacher may then have
    the other activation); flat keys `split <activation|all>:fidelity_[blind_]<measure>`, as the evaluation's."""
    import numpy as np

    from ..tasks.classification import task_images
    from ..weightspace.registry import codes_of

    params = torch.from_numpy(zoo.read_params(split, limit=limit))
    acts = np.array(zoo.activations(split)[:len(params)])
    if only_activation:
        params, acts = params[torch.from_numpy(acts == only_activation)], acts[acts == only_activation]
    x, y = task_images(zoo.task, "test", data_root)
    names = list(dict.fromkeys(acts.tolist()))
    out: dict[str, float] = {}
    for group in names + (["all"] if len(names) > 1 else []):
        mask = torch.ones(len(acts), dtype=torch.bool) if group == "all" else torch.from_numpy(acts == group)
        if int(mask.sum()) < 2:
            continue
        group_acts = acts[mask.numpy()].tolist()
        act = group if group != "all" else group_acts
        for who, measures in split_fidelity(model, params[mask], codes_of(group_acts), x, y, act).items():
            out.update({f"split {group}:fidelity_{who}{k}": v for k, v in measures.items()})
        out[f"split {group}:fidelity_networks"] = float(mask.sum())
    return out
