"""K-way merges on a zoo split: the merged network's quality next to its parents' mean.

    ev = KWayEvaluation(zoo, "test", ks=(2, 4, 8), groups=16)
    result = ev.run(model)        # model None: naive and mergemany only
    print(result.table())         # also result.markdown(), result.html(), result.rows

    python -m gmnae.evaluation.kway_eval --zoo zoo/mnist5k-inr-s8 --model runs/NAME --k 2,4,8 --groups 32

Groups: K separately trained networks of one image (INR zoos, `image_index`; an image needs ≥ K
seeds: `gmnae zoo build mnist5k-inr --seeds N`) or of the zoo's task with one activation (CNN
zoos); an image with N seeds gives ⌊N/K⌋ groups; no network is in two groups of one K. Quality: PSNR of the rendering against the target
image (INRs, dB), accuracy on the task's held-out images (CNNs). Methods: `naive` (mean weights),
`mergemany` (Git Re-Basin's MergeMany, gmnae/merge/kway.py, with the activation's variant:
wm-signed for sine/tanh, wm-scale for ReLU), `mergemany-wm` (permutations only), `ae` (decode the mean latent) and
`ae-endpoints` (mean of the decoded networks), plus the parents decoded one by one (`parents
decoded`: the autoencoder's own ceiling).
"""
from __future__ import annotations

import argparse
import html
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..merge.interpolation import zoo_evaluator
from ..merge.pairs import _rng
from ..weightspace.family import network_family

DEFAULT_KS = (2, 4, 8)


@dataclass
class KWayGroups:
    arch: object                 # activation set (never "mixed")
    nets: torch.Tensor           # [G, K, P]
    rows: np.ndarray             # [G, K] rows of the zoo split


def kway_groups(zoo, split: str, k: int, n_groups: int | None, seed: int = 0, activation: str | None = None,
                dtype=torch.float64) -> KWayGroups | None:
    """Disjoint groups of K networks of one image (INRs) or one activation (CNNs); None when there are none."""
    arch, allowed = zoo.arch, None
    if arch.activation == "mixed":
        acts = np.asarray(zoo.activations(split))
        allowed = np.nonzero(acts == activation)[0]
        arch = arch.with_activation(activation)
    meta = zoo.read_meta(split)
    n = len(next(iter(meta.values())))
    allowed = np.arange(n) if allowed is None else allowed
    rng = _rng(seed, "kway", k)
    if "image_index" in meta:
        images = np.asarray(meta["image_index"])[allowed]
        groups = []
        for img in np.unique(images):
            members = allowed[images == img]
            members = members[rng.permutation(len(members))]
            groups += [members[i:i + k] for i in range(0, len(members) - k + 1, k)]
    else:
        members = allowed[rng.permutation(len(allowed))]
        groups = [members[i:i + k] for i in range(0, len(members) - k + 1, k)]
    if not groups:
        return None
    order = rng.permutation(len(groups))[:n_groups]
    rows = np.stack([groups[i] for i in order])
    params = torch.from_numpy(zoo.read_params(split)).to(dtype)
    return KWayGroups(arch, params[torch.from_numpy(rows.reshape(-1))].view(*rows.shape, -1), rows)


def _quality(ev, nets: torch.Tensor) -> torch.Tensor:
    """Per network `[m]`: PSNR vs the target (INR, dB) or held-out accuracy (CNN)."""
    curves = ev(nets.unsqueeze(1))
    if "accuracy" in curves:
        return curves["accuracy"][:, 0].double()
    return (10 * torch.log10(1.0 / curves["mse"][:, 0].double().clamp_min(1e-12)))


@dataclass
class KWayResult:
    rows: list[dict]                                   # one per (activation, K, method)
    notes: list[str] = field(default_factory=list)     # K values a zoo could not provide, and why
    split: str = ""
    seconds: float = 0.0

    def _grid(self):
        keys = list(dict.fromkeys((r["activation"], r["k"]) for r in self.rows))
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        by = {(r["activation"], r["k"], r["method"]): r for r in self.rows}
        return keys, methods, by

    def _header(self) -> tuple[str, str]:
        metric = self.rows[0]["metric"] if self.rows else "quality"
        unit = " (dB)" if metric == "psnr" else ""
        return metric, (f"K-way merges on the {self.split} split: {metric}{unit} of the merged network and its "
                        "K parents' mean (mean ± std over groups; higher is better)")

    def _cells(self):
        keys, methods, by = self._grid()
        head = ["activation", "K", "groups", "parents"] + methods
        body = []
        for act, k in keys:
            first = by[(act, k, methods[0])]
            cells = [act, str(k), str(first["groups"]), f"{first['parents_mean']:.3f} ± {first['parents_std']:.3f}"]
            for m in methods:
                r = by.get((act, k, m))
                cells.append(f"{r['merged_mean']:.3f} ± {r['merged_std']:.3f}" if r else "–")
            body.append(cells)
        return head, body

    def table(self) -> str:
        _, title = self._header()
        if not self.rows:
            return f"{title}\n  (no groups)" + "".join(f"\n  note: {n}" for n in self.notes)
        head, body = self._cells()
        widths = [max(len(h), *(len(r[i]) for r in body)) + 2 for i, h in enumerate(head)]
        lines = [title, "".join(h.rjust(w) for h, w in zip(head, widths))]
        lines += ["".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def markdown(self) -> str:
        if not self.rows:
            return ""
        head, body = self._cells()
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(out)

    def html(self) -> str:
        _, title = self._header()
        parts = [f"<h2>{html.escape(title)}</h2>"]
        if self.rows:
            head, body = self._cells()
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
                         + "</table>")
        parts.append("<p class='note'>Groups of K separately trained networks (INRs: of one image; CNNs: of the "
                     "task, one activation). naive: mean weights; mergemany: Git Re-Basin's MergeMany (each network "
                     "matched to the mean of the others until no assignment changes; signed permutations for sine/tanh, "
                     "scale-aware for ReLU); mergemany-wm: the same with permutations only; ae: dec(mean of the K latents); "
                     "ae-endpoints: mean of dec(enc(θ<sub>k</sub>)); parents decoded: dec(enc(θ<sub>k</sub>)) one by "
                     "one, averaged over the parents.</p>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in self.notes]
        return "\n".join(parts)


class KWayEvaluation:
    def __init__(self, zoo, split: str = "test", ks=DEFAULT_KS, groups: int = 16, seed: int = 0,
                 max_iter: int = 100, data_root: str | None = None, activation: str | None = None,
                 finetune: int = 0):
        self.zoo, self.split, self.ks, self.n_groups = zoo, split, tuple(ks), groups
        self.finetune = finetune  # > 0: every method also as "<method>+ft<S>" (merge/finetune.py)
        self.seed, self.max_iter, self.data_root = seed, max_iter, data_root
        self.activations = sorted(set(zoo.activations(split))) if activation is None else [activation]

    @torch.no_grad()
    def run(self, model=None, log=None) -> KWayResult:
        from .ae_merge import ae_endpoints_merge, ae_merge
        from ..merge.kway import merge_many, weighted_mean
        from ..merge.matching import default_method

        t0 = time.perf_counter()
        rows, notes = [], []
        for act in self.activations:
            for k in self.ks:
                g = kway_groups(self.zoo, self.split, k, self.n_groups, self.seed,
                                act if self.zoo.arch.activation == "mixed" else None)
                if g is None:
                    most = self._most_per_group(act)
                    notes.append(f"K={k} ({act}): no group of {k} networks in the {self.split} split (at most {most} "
                                 f"per {'image' if self._by_image() else 'activation'}); build the zoo with "
                                 f"--seeds {k} or more")
                    continue
                G, K, P = g.nets.shape
                ev_all = zoo_evaluator(self.zoo, self.split, g.rows.reshape(-1), activation=act, data_root=self.data_root)
                if not network_family(self.zoo.arch).classifies and getattr(ev_all, "targets", None) is None:
                    notes.append(f"zoo {self.zoo.name} has no target images: INR quality needs them; skipped")
                    return KWayResult(rows, notes, self.split, time.perf_counter() - t0)
                ev = zoo_evaluator(self.zoo, self.split, g.rows[:, 0], activation=act, data_root=self.data_root)
                parents = _quality(ev_all, g.nets.reshape(G * K, P)).view(G, K).mean(1)
                merged = {"naive": weighted_mean(g.nets),
                          "mergemany": merge_many(g.arch, g.nets, max_iter=self.max_iter, seed=self.seed).merged}
                if default_method(act) != "wm":  # the permutation-only variant beside the signed / scale-aware one
                    merged["mergemany-wm"] = merge_many(g.arch, g.nets, "wm", max_iter=self.max_iter,
                                                        seed=self.seed).merged
                if model is not None:
                    merged["ae"] = ae_merge(model, g.nets, activation=act).cpu()
                    merged["ae-endpoints"] = ae_endpoints_merge(model, g.nets, activation=act).cpu()
                if self.finetune:
                    merged.update(self._finetuned(g, merged))
                for method, nets in merged.items():
                    q = _quality(ev, nets.double())
                    rows.append(self._row(act, k, G, parents, method, q))
                if model is not None:
                    from .ae_merge import _latents

                    z = _latents(model, g.nets, act)
                    dec = model.decode(z.reshape(G * K, -1)).cpu().double()
                    q = _quality(ev_all, dec).view(G, K).mean(1)
                    rows.append(self._row(act, k, G, parents, "parents decoded", q))
                if log:
                    log(f"  K={k} {act}: {G} groups done ({time.perf_counter() - t0:.0f}s)")
        return KWayResult(rows, notes, self.split, time.perf_counter() - t0)

    def _finetuned(self, g, merged: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each merge after `finetune` steps towards its group's mean function."""
        from ..merge.finetune import finetune_to_parents, function_inputs

        parents = g.nets.double()
        inputs = function_inputs(g.arch, self.zoo.task, self.data_root).to(parents.dtype)
        weights = torch.full(parents.shape[:2], 1.0 / parents.shape[1], dtype=parents.dtype)
        return {f"{m}+ft{self.finetune}": finetune_to_parents(g.arch, nets.double(), parents, weights, inputs,
                                                               self.finetune)
                for m, nets in merged.items()}

    def _by_image(self) -> bool:
        return "image_index" in self.zoo.read_meta(self.split)

    def _most_per_group(self, act: str) -> int:
        meta = self.zoo.read_meta(self.split)
        if "image_index" in meta:
            return int(np.bincount(np.asarray(meta["image_index"])).max()) if len(meta["image_index"]) else 0
        return int((np.asarray(self.zoo.activations(self.split)) == act).sum())

    def _row(self, act, k, G, parents, method, q) -> dict:
        metric = network_family(self.zoo.arch).metric
        std = (lambda v: float(v.std()) if len(v) > 1 else 0.0)
        return {"activation": act, "k": k, "groups": G, "metric": metric, "method": method,
                "parents_mean": float(parents.mean()), "parents_std": std(parents),
                "merged_mean": float(q.mean()), "merged_std": std(q),
                "gap_mean": float((q - parents).mean())}


def parse_ks(text: str) -> tuple[int, ...]:
    """'2,4,8' -> (2, 4, 8); 'none' or '' -> ()."""
    if text.strip().lower() in ("", "none", "0"):
        return ()
    ks = tuple(int(x) for x in text.split(","))
    if any(k < 2 for k in ks):
        raise ValueError(f"K values {text!r} must be at least 2")
    return ks


def main(argv: list[str] | None = None) -> int:
    """The K-way table (docs/results/kway.md; experiments/kway): python -m gmnae.evaluation.kway_eval --zoo DIR [--model RUN] [--k 2,4,8]."""
    from ..errors import GmnaeError
    from ..zoo import Zoo

    p = argparse.ArgumentParser(prog="python -m gmnae.evaluation.kway_eval", description=main.__doc__)
    p.add_argument("--zoo", required=True, help="zoo folder")
    p.add_argument("--model", help="autoencoder run folder or .ckpt (adds ae, ae-endpoints)")
    p.add_argument("--split", default="test")
    p.add_argument("--k", default="2,4,8", help="group sizes (default 2,4,8)")
    p.add_argument("--groups", type=int, default=32, help="groups per K (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="task image folder (CIFAR-10 zoos)")
    p.add_argument("--finetune", type=int, default=0, metavar="STEPS",
                   help="also each method after STEPS Adam steps towards the group's mean function (default 0: off)")
    p.add_argument("--out", help="also write the markdown table (and the rows as JSON beside it) here")
    args = p.parse_args(argv)
    try:
        ks = parse_ks(args.k)
        model = None
        if args.model:
            from .ae_merge import load_autoencoder

            model = load_autoencoder(args.model)
        zoo = Zoo(args.zoo)
        if model is not None and zoo.arch.layers != model.arch.layers:
            raise GmnaeError(f"zoo {zoo.root} holds {zoo.arch.describe()}, the model was trained on "
                             f"{model.arch.describe()}; pass the model of this zoo")
        if args.finetune < 0:
            raise GmnaeError(f"--finetune {args.finetune}: the number of steps must be >= 0")
        res = KWayEvaluation(zoo, args.split, ks, args.groups, args.seed, data_root=args.data_root,
                             finetune=args.finetune).run(model, log=print)
    except (GmnaeError, ValueError) as e:
        print(f"error: {e}")
        return 2
    print(res.table())
    print(res.markdown())
    print(f"({res.seconds:.0f}s)")
    if args.out:
        import json
        from pathlib import Path

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(res.markdown() + "\n" + "".join(f"\nnote: {n}" for n in res.notes) + "\n")
        out.with_suffix(".json").write_text(json.dumps({"rows": res.rows, "notes": res.notes}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
