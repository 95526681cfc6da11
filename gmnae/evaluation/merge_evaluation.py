"""Merging evaluation of an autoencoder: interpolation curves and barriers on fixed pair sets.

    ev = MergeEvaluation(zoo, "val", pairs_per_type=8, lambdas=25)
    ev = MergeEvaluation.from_datamodule(datamodule, cfg, "val")   # a training run: the datamodule's pairs
    result = ev.run(model)                      # EvaluationResult: curves and barrier summaries
    print(result.table())

Pair types (per activation of the zoo): orbit pairs for each set of symmetries (the activation's orbit
symmetries in `weightspace.registry`: P/D/PD with sign symmetry, P/S/PS with positive-scale symmetry, plus
Gaussian noise) and independent pairs; all drawn from one read of the split (`merge.pairs.SplitNetworks`). Methods: `naive`, `wm` and the matching variant of the
activation's group (`wm-signed`, `wm-scale`), `ae` (decode (1-λ)z_a + λz_b) and `ae-endpoints` (interpolate
between the decoded endpoints dec(enc(a)), dec(enc(b))): at λ, each is `gmnae merge --method M --alpha λ`
(one meaning per name: the table in gmnae/merge/methods.py; runs written before it called these `ae-latent`
and `ae`, read back with `methods.current_rows` / `current_columns`).
Every summary row carries the quality at the endpoints and at the midpoint λ = 0.5 (`end_<metric>`,
`mid_<metric>`); `reconstruction` carries the fidelity measures (`gmnae/evaluation/fidelity.py`: each decoded network
against its own original and another network's, beside the latent-blind decoder), shown by `table()`.

Under DDP, every rank computes its share of the pairs (`rank`/`world_size`), the shares are
gathered with one `gather` call per tensor, same shape on every rank, and every rank ends with the
same full result. Baseline methods do not depend on the model: they are computed once and cached.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .fidelity import cnn_fidelity, inr_fidelity, other_indices
from ..merge.barriers import barrier_metrics
from ..merge.interpolation import lambda_grid, linear_path, method_path, zoo_evaluator
from ..merge.methods import names
from ..merge.pairs import PairSet, SplitNetworks, evaluation_pair_sets
from ..weightspace.registry import activation as activation_row, code_of
from ..weightspace.family import network_family

AE_METHODS = names(needs_model=True, curve=True)  # ae, ae-endpoints (gmnae/merge/methods.py)


def baseline_methods(activation: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(("naive", "wm", activation_row(activation).matching)))


@dataclass
class EvaluationResult:
    lambdas: torch.Tensor
    # curves[pair type][method][metric] -> [n_pairs, L]
    curves: dict[str, dict[str, dict[str, torch.Tensor]]]
    primary: dict[str, str]           # pair type -> the metric barriers are computed on
    higher_is_better: dict[str, bool]
    reconstruction: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def barriers(self) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
        """[pair type][method][barrier metric] -> per-pair values `[n]` on the pair type's primary metric."""
        out = {}
        for pair_type, methods in self.curves.items():
            out[pair_type] = {m: barrier_metrics(c[self.primary[pair_type]], self.lambdas) for m, c in methods.items()}
        return out

    def summary(self) -> list[dict]:
        """One row per (pair type, method): mean/std/median/quartiles of each barrier metric. The pair type's
        column is called `kind` (barriers.csv and summary.json of existing runs are read by that name)."""
        rows = []
        for pair_type, methods in self.barriers().items():
            for method, metrics in methods.items():
                row = {"kind": pair_type, "method": method, "metric": self.primary[pair_type],
                       "pairs": len(next(iter(metrics.values())))}
                for name, v in metrics.items():
                    v = v.double()
                    row[f"{name}_mean"] = float(v.mean())
                    row[f"{name}_std"] = float(v.std()) if len(v) > 1 else 0.0
                    row[f"{name}_median"] = float(v.median())
                # quality at the midpoint (λ nearest 0.5) and at the endpoints, for every metric of the curves
                mid = int((self.lambdas - 0.5).abs().argmin())
                for name, c in self.curves[pair_type][method].items():
                    c = c.double()
                    row[f"mid_{name}_mean"] = float(c[:, mid].mean())
                    row[f"end_{name}_mean"] = float(0.5 * (c[:, 0] + c[:, -1]).mean())
                rows.append(row)
        return rows

    def scalars(self) -> dict[str, float]:
        """Flat scalars for loggers: interp/<pair type>/<method>/<barrier metric>."""
        out = {}
        for row in self.summary():
            for key in ("barrier", "barrier_linear", "auc", "max", "min"):
                if f"{key}_mean" in row:
                    out[f"interp/{row['kind']}/{row['method']}/{key}"] = row[f"{key}_mean"]
            for key in row:
                if key.startswith("mid_"):
                    out[f"interp/{row['kind']}/{row['method']}/{key[:-len('_mean')]}"] = row[key]
        out.update({f"recon/{k}": v for k, v in self.reconstruction.items()})
        out["interp/seconds"] = self.seconds
        return out

    def table(self) -> str:
        """Barrier (mean ± std) by method x pair type, as text."""
        rows = self.summary()
        pair_types = list(dict.fromkeys(r["kind"] for r in rows))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        cell = {(r["kind"], r["method"]): f"{r['barrier_mean']:.4f} ± {r['barrier_std']:.4f}" for r in rows}
        w = max(18, *(len(k) + 2 for k in pair_types))
        lines = [f"{'method':<12}" + "".join(f"{k:>{w}}" for k in pair_types)]
        for m in methods:
            lines.append(f"{m:<12}" + "".join(f"{cell.get((k, m), '-'):>{w}}" for k in pair_types))
        metric = ", ".join(sorted(set(self.primary.values())))
        text = f"loss barrier on {metric} (max - mean of endpoints), mean ± std over pairs\n" + "\n".join(lines)
        quality = "accuracy" if all("mid_accuracy_mean" in r for r in rows) else None
        if quality:
            mid = {(r["kind"], r["method"]): f"{r['end_accuracy_mean']:.3f} -> {r['mid_accuracy_mean']:.3f}" for r in rows}
            lines = [f"{'method':<12}" + "".join(f"{k:>{w}}" for k in pair_types)]
            lines += [f"{m:<12}" + "".join(f"{mid.get((k, m), '-'):>{w}}" for k in pair_types) for m in methods]
            text += "\n\naccuracy at the endpoints (mean) -> at the midpoint λ = 0.5\n" + "\n".join(lines)
        fidelity = self.fidelity_table()  # first: a barrier between decoded networks means little without it
        return (fidelity + "\n\n" if fidelity else "") + text

    def fidelity(self) -> dict[str, dict[str, float]]:
        """The fidelity measures of `reconstruction`, by activation prefix ("" for one activation):
        {prefix: {"agreement_own": …, "blind_agreement_own": …, …}}."""
        out: dict[str, dict[str, float]] = {}
        for key, v in self.reconstruction.items():
            head, sep, name = key.partition("fidelity_")
            if sep:
                out.setdefault(head, {})[name] = v
        return out

    def fidelity_table(self) -> str:
        """Decoded vs own and vs another network's original, autoencoder and latent-blind decoder, as text."""
        lines = []
        for prefix, m in self.fidelity().items():
            names = [k for k in m if not k.startswith("blind_")]
            lines.append(f"fidelity{' ' + prefix.rstrip(':') if prefix else ''} (own vs another network's original)")
            w = [max(10, len(k) + 1) for k in names]
            lines.append(f"{'':<12}" + "".join(f"{k:>{n}}" for k, n in zip(names, w)))
            for who, label in (("", "autoencoder"), ("blind_", "latent-blind")):
                lines.append(f"{label:<12}" + "".join(f"{m[who + k]:>{n}.4f}" if who + k in m else f"{'-':>{n}}"
                                                      for k, n in zip(names, w)))
        return "\n".join(lines)


def _local_indices(n: int, rank: int, world: int) -> tuple[torch.Tensor, int]:
    """This rank's pair indices, padded (by repeating its first) to ceil(n / world) for equal shapes."""
    per = math.ceil(n / world)
    mine = list(range(rank, n, world))
    padded = mine + [mine[0] if mine else 0] * (per - len(mine))
    return torch.tensor(padded, dtype=torch.long), len(mine)


def _reassemble(gathered: torch.Tensor, n: int, world: int) -> torch.Tensor:
    """Inverse of the round-robin split: gathered `[world, per, ...]` -> `[n, ...]`."""
    per = gathered.shape[1]
    order = gathered.transpose(0, 1).reshape(world * per, *gathered.shape[2:])  # pair i = (i % world, i // world)
    return order[:n]


class MergeEvaluation:
    """Fixed, seeded pair sets of a zoo split and the curves of every method on them.

    The split is read once (`networks`, a `merge.pairs.SplitNetworks`) for every pair type, its pairs and
    evaluators; a CNN zoo's held-out images (`test_images`) are loaded once too. A training run passes the
    datamodule's (`from_datamodule`); without them they are read here."""

    def __init__(self, zoo, split: str = "val", pairs_per_type: int = 8, lambdas: int = 25, noise_std: float = 0.005,
                 max_iter: int = 100, seed: int = 0, activation: str | None = None, data_root: str | None = None,
                 reconstructions: int = 8, finetune_steps: int = 0, networks: SplitNetworks | None = None,
                 pair_sets: dict[str, PairSet] | None = None,
                 test_images: tuple[torch.Tensor, torch.Tensor] | None = None,
                 train_images: torch.Tensor | None = None):
        self.zoo, self.split, self.data_root = zoo, split, data_root
        self.finetune_steps = finetune_steps
        self.lambdas = lambda_grid(lambdas)
        self.max_iter, self.n_recon = max_iter, reconstructions
        self.networks = SplitNetworks.read(zoo, split) if networks is None else networks
        self.pair_sets: dict[str, PairSet] = (evaluation_pair_sets(self.networks, pairs_per_type, seed, noise_std,
                                                                   activation) if pair_sets is None else pair_sets)
        self.test_images, self.train_images = test_images, train_images
        self._evaluators = {}
        self._baselines: dict[str, dict[str, dict[str, torch.Tensor]]] | None = None

    @staticmethod
    def from_config(zoo, cfg, split: str = "val") -> "MergeEvaluation":
        e = cfg.evaluation
        return MergeEvaluation(zoo, split, e.pairs_per_type, e.lambdas, e.noise_std, e.max_iter, cfg.seed,
                               cfg.dataset.get("activation"), cfg.dataset.get("data_root"), e.reconstructions,
                               e.get("finetune_steps", 0))

    @staticmethod
    def from_datamodule(dm, cfg, split: str = "val") -> "MergeEvaluation":
        """The evaluation of a training run: split, pairs and task images from its `ZooDataModule`."""
        e = cfg.evaluation
        pairs = dm.evaluation_pairs(split, e.pairs_per_type, cfg.seed, e.noise_std)
        cnn = dm.family.classifies
        return MergeEvaluation(dm.zoo, split, e.pairs_per_type, e.lambdas, e.noise_std, e.max_iter, cfg.seed,
                               dm.activation, dm.data_root, e.reconstructions, e.get("finetune_steps", 0),
                               networks=dm.split_networks(split), pair_sets=pairs,
                               test_images=dm.task_images("test") if cnn else None,
                               train_images=dm.task_images("train")[0] if cnn else None)

    def evaluator(self, pair_type: str):
        if pair_type not in self._evaluators:
            ps = self.pair_sets[pair_type]
            if self.test_images is None and network_family(self.zoo.arch).classifies:
                from ..tasks.classification import task_images

                self.test_images = task_images(self.zoo.task, "test", self.data_root)
            self._evaluators[pair_type] = zoo_evaluator(self.zoo, self.split, ps.index_a, activation=ps.activation,
                                                        data_root=self.data_root, reference=ps.a,
                                                        meta=self.networks.meta, images=self.test_images)
        return self._evaluators[pair_type]

    # ---- curves of one shard of pairs -----------------------------------------------------------
    def _baseline_curves(self, pair_type: str, idx: torch.Tensor, device) -> dict[str, dict[str, torch.Tensor]]:
        ps = self.pair_sets[pair_type]
        ev = self._shard_evaluator(pair_type, idx)
        a, b = ps.a[idx].to(device), ps.b[idx].to(device)
        out = {}
        for method in baseline_methods(ps.activation):
            path = method_path(ps.arch, a, b, method, self.lambdas.to(device), max_iter=self.max_iter)
            out[method] = ev(path)
        return out

    def _ae_curves(self, model, pair_type: str, idx: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        ps = self.pair_sets[pair_type]
        ev = self._shard_evaluator(pair_type, idx)
        device, dtype = model.device, next(model.parameters()).dtype
        a, b = ps.a[idx].to(device, dtype), ps.b[idx].to(device, dtype)
        codes = torch.full((len(idx),), code_of(ps.activation), device=device)
        lam = self.lambdas.to(device, dtype)
        za, zb = model.encode(a, codes), model.encode(b, codes)
        z_path = linear_path(za, zb, lam)  # [n, L, d]
        latent_path = model.decode(z_path.reshape(-1, z_path.shape[-1])).view(len(idx), len(lam), -1)
        endpoints_path = linear_path(model.decode(za), model.decode(zb), lam)
        return {"ae": ev(latent_path), "ae-endpoints": ev(endpoints_path)}

    def _shard_evaluator(self, pair_type: str, idx: torch.Tensor):
        """The pair type's evaluator restricted to the pairs `idx` (targets and references follow the pairs)."""
        import copy

        ev = copy.copy(self.evaluator(pair_type))
        for attr in ("targets", "reference"):
            v = getattr(ev, attr, None)
            if v is not None:
                setattr(ev, attr, v[idx])
        if isinstance(getattr(ev, "activation", None), (list, tuple)):
            ev.activation = [ev.activation[i] for i in idx.tolist()]
        return ev

    # ---- the whole evaluation -------------------------------------------------------------------
    def _sharded(self, fn, rank: int, world: int, gather) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
        """Run fn(pair_type, idx) -> {method: {metric: [m, L]}} on this rank's pairs; gather every rank's share."""
        out = {}
        for pair_type, ps in self.pair_sets.items():
            idx, _ = _local_indices(len(ps), rank, world)
            local = fn(pair_type, idx)
            out[pair_type] = {}
            for method, metrics in local.items():
                out[pair_type][method] = {}
                for name, t in metrics.items():
                    t = t.detach().float()
                    g = gather(t) if world > 1 else t.unsqueeze(0)
                    out[pair_type][method][name] = _reassemble(g.cpu(), len(ps), world)
        return out

    @torch.no_grad()
    def run(self, model, rank: int = 0, world_size: int = 1, gather=None) -> EvaluationResult:
        """Every rank must call this (it gathers); every rank gets the same result."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        device = model.device
        if self._baselines is None:
            self._baselines = self._sharded(lambda k, i: self._baseline_curves(k, i, device), rank, world_size, gather)
        ae = self._sharded(lambda k, i: self._ae_curves(model, k, i), rank, world_size, gather)
        curves = {k: {**self._baselines[k], **ae[k]} for k in self.pair_sets}
        primary = {k: self.evaluator(k).primary for k in self.pair_sets}
        hib = {k: False for k in self.pair_sets}
        recon = self.reconstruction_quality(model)
        if self.finetune_steps:
            recon.update(self.finetuned_midpoints(model))
        model.train(was_training)
        return EvaluationResult(self.lambdas, curves, primary, hib, recon, time.perf_counter() - t0)

    def finetuned_midpoints(self, model) -> dict[str, float]:
        """Independent pairs: every method's midpoint λ = 0.5 before and after `finetune_steps` Adam steps towards the
        pair's mean function (merge/finetune.py), scored as the curves are: PSNR against the target (INRs), held-out
        accuracy (CNNs). Keys `<pair type prefix>midpoint_<method>[+ft<S>]_<psnr|accuracy>`."""
        from ..merge.finetune import finetune_to_parents, function_inputs

        out, steps = {}, self.finetune_steps
        device, dtype = model.device, next(model.parameters()).dtype
        for pair_type, ps in self.pair_sets.items():
            if not pair_type.endswith("independent"):
                continue
            prefix = pair_type[: -len("independent")]
            a, b = ps.a.to(device, dtype), ps.b.to(device, dtype)
            half = torch.tensor([0.5], dtype=dtype, device=device)
            mids = {m: method_path(ps.arch, a, b, m, half, max_iter=self.max_iter)[:, 0]
                    for m in baseline_methods(ps.activation)}
            codes = torch.full((len(a),), code_of(ps.activation), device=device)
            za, zb = model.encode(a, codes), model.encode(b, codes)
            mids["ae"] = model.decode(0.5 * (za + zb))
            mids["ae-endpoints"] = 0.5 * (model.decode(za) + model.decode(zb))
            inputs = function_inputs(ps.arch, self.zoo.task, self.data_root,
                                     train_images=self.train_images).to(device, dtype)
            parents = torch.stack([a, b], 1)
            weights = torch.full((len(a), 2), 0.5, dtype=dtype, device=device)
            ev = self.evaluator(pair_type)
            for method, mid in mids.items():
                tuned = finetune_to_parents(ps.arch, mid, parents, weights, inputs, steps)
                curves = ev(torch.stack([mid, tuned], 1))
                if "accuracy" in curves:
                    name, q = "accuracy", curves["accuracy"].double()
                else:
                    name, q = "psnr", 10 * torch.log10(1.0 / curves["mse"].double().clamp_min(1e-12))
                out[f"{prefix}midpoint_{method}_{name}"] = float(q[:, 0].mean())
                out[f"{prefix}midpoint_{method}+ft{steps}_{name}"] = float(q[:, 1].mean())
        return out

    def sample_networks(self) -> tuple[str, torch.Tensor]:
        """A few networks of the split (the first endpoints of the first pair type) for reconstructions."""
        pair_type = next(iter(self.pair_sets))
        return pair_type, self.pair_sets[pair_type].a[: self.n_recon]

    def baselines(self, limit: int = 2048) -> dict[str, torch.Tensor]:
        """What a model that ignores its input could output, from the train split: the mean network
        (and, for INRs, the mean rendering: the best constant image under MSE)."""
        if not hasattr(self, "_baseline_nets"):
            train = torch.from_numpy(self.zoo.read_params("train", limit=limit))
            self._baseline_nets = {"mean_network": train.mean(0, keepdim=True)}
            if not network_family(self.zoo.arch).classifies:
                ev = self.evaluator(next(iter(self.pair_sets)))
                self._baseline_nets["mean_image"] = ev.render(train).mean(0, keepdim=True)
        return self._baseline_nets

    def reconstruction_quality(self, model) -> dict[str, float]:
        """INR: PSNR of decoded vs original renderings. CNN: accuracy of decoded vs original networks.
        Both next to the input-blind baselines (mean network, mean image), and the fidelity measures
        (`gmnae/evaluation/fidelity.py`): each decoded network against its own original and against another
        network's, for the autoencoder and for the latent-blind decoder (one fixed latent: the mean latent
        of the evaluated networks)."""
        out = {}
        base = self.baselines()
        for pair_type, ps in self.pair_sets.items():
            if not pair_type.endswith("independent"):
                continue
            prefix = pair_type[: -len("independent")]
            device, dtype = model.device, next(model.parameters()).dtype
            a = torch.cat([ps.a, ps.b]).to(device, dtype)
            codes = torch.full((len(a),), code_of(ps.activation), device=device)
            z = model.encode(a, codes)
            decoded = model.decode(z)
            blind = model.decode(z.mean(0, keepdim=True)).expand(len(a), -1)
            # "another network": for INRs never the pair partner (a pair shares its image), so it needs two pairs;
            # for CNNs any other network of the set (all learned the same task)
            renders = not network_family(ps.arch).classifies
            if renders:
                other = other_indices(torch.arange(len(ps)).repeat(2)) if len(ps) > 1 else None
            else:
                other = other_indices(torch.arange(len(a)))
            ev = self.evaluator(pair_type)
            if renders:
                orig, rec = ev.render(a), ev.render(decoded)
                mse = (orig - rec).pow(2).mean(1)
                out[f"{prefix}psnr_decoded_vs_original"] = float((10 * torch.log10(1 / mse.clamp_min(1e-12))).mean())
                for name, rendering in (("mean_image", base["mean_image"].to(orig)),
                                        ("mean_network", ev.render(base["mean_network"].to(a)))):
                    b_mse = (orig - rendering).pow(2).mean(1)
                    out[f"{prefix}psnr_baseline_{name}_vs_original"] = float((10 * torch.log10(1 / b_mse)).mean())
                if ev.targets is not None:
                    t = torch.cat([ev.targets, ev.targets]).to(orig)
                    out[f"{prefix}psnr_original_vs_target"] = float((10 * torch.log10(1 / (orig - t).pow(2).mean(1))).mean())
                    out[f"{prefix}psnr_decoded_vs_target"] = float((10 * torch.log10(1 / (rec - t).pow(2).mean(1))).mean())
                fid = {"": inr_fidelity(orig, rec, other), "blind_": inr_fidelity(orig, ev.render(blind), other)}
            else:
                both = torch.stack([a, decoded], 1)  # [n, 2, P] as a 2-point "path"
                ev2 = self._shard_evaluator(pair_type, torch.arange(len(ps)).repeat(2))
                acc = ev2(both)["accuracy"]
                out[f"{prefix}accuracy_original"] = float(acc[:, 0].mean())
                out[f"{prefix}accuracy_decoded"] = float(acc[:, 1].mean())
                mean_net = base["mean_network"].to(a).expand(1, 2, -1)
                out[f"{prefix}accuracy_baseline_mean_network"] = float(self._shard_evaluator(pair_type, torch.arange(1))(mean_net)["accuracy"][0, 0])
                args = (ev.images, ev.labels, ps.activation, other)
                fid = {"": cnn_fidelity(ps.arch, a, decoded, *args), "blind_": cnn_fidelity(ps.arch, a, blind, *args)}
                for k in ("accuracy_corr", "accuracy_tau"):  # one network for all: no correlation to speak of
                    fid["blind_"].pop(k)
            for who, measures in fid.items():
                out.update({f"{prefix}fidelity_{who}{k}": v for k, v in measures.items()})
        return out
