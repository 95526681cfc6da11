"""Baselines for the downstream tasks, fitted in the same run and on the same split as the encoder.

    table = fit_baselines(arch, task="classify", splits={"train": (P, y), "val": (P, y), "test": (P, y)})

What a reviewer asks an encoder to beat (Unterthiner et al. 2020; Navon et al. 2023):
- `statnn`: per tensor, mean, std and the 0/25/50/75/100 % quantiles of the weights and of the biases
  (Unterthiner et al.'s StatNN) -> gradient-boosted trees;
- `raw`: the flattened parameter vector (not invariant) -> MLP;
- `sorted-invariant`: per tensor, the sorted absolute values (invariant to hidden-unit permutations
  and sign flips; permutation-only for ReLU nets) -> logistic / ridge regression;
- `probe`: the network's outputs at fixed inputs (an 8 x 8 grid for INRs, task images for CNNs) ->
  logistic / ridge regression. It reads the *function*, not the weights: an upper reference.

Scores: accuracy (classify) or Kendall tau between predicted and true test accuracy (predict-accuracy).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..weightspace import Architecture, forward
from ..weightspace.family import network_family
from ..weightspace.layout import param_slices

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def statnn_features(arch: Architecture, params: torch.Tensor) -> torch.Tensor:
    feats = []
    for sl in param_slices(arch):
        t = params[:, sl].double()
        feats += [t.mean(1, keepdim=True), t.std(1, keepdim=True, correction=0)]
        feats.append(torch.quantile(t, torch.tensor(QUANTILES, dtype=t.dtype), dim=1).T)
    return torch.cat(feats, 1)


def sorted_invariant_features(arch: Architecture, params: torch.Tensor) -> torch.Tensor:
    return torch.cat([params[:, sl].abs().sort(1).values for sl in param_slices(arch)], 1)


def probe_features(arch: Architecture, params: torch.Tensor, inputs: torch.Tensor, activation=None) -> torch.Tensor:
    with torch.no_grad():
        out = forward(arch, params, inputs, activation)
    return out.flatten(1)


def probe_inputs(arch: Architecture, task_images: torch.Tensor | None = None, points: int = 64) -> torch.Tensor:
    """8 x 8 cell centres for 2-D INRs; the first `points` task images for CNNs."""
    if not network_family(arch).classifies:
        from ..tasks.grid import coordinate_grid

        side = math.isqrt(points)
        return coordinate_grid(side) * (1 - 1 / side)
    return task_images[:points]


def score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if task == "classify":
        return float((y_true == y_pred).mean())
    from scipy.stats import kendalltau

    return float(kendalltau(y_true, y_pred).statistic)


def _models(task: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task == "classify":
        linear = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        mlp = lambda: make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, early_stopping=True,
                                                                    random_state=seed))
        gbt = lambda: HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    else:
        linear = lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        mlp = lambda: make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(256,), max_iter=300, early_stopping=True,
                                                                   random_state=seed))
        gbt = lambda: HistGradientBoostingRegressor(max_iter=200, random_state=seed)
    return {"statnn": gbt, "raw": mlp, "sorted-invariant": linear, "probe": linear}


def fit_baselines(arch: Architecture, task: str, splits: dict[str, tuple], probe: torch.Tensor | None = None,
                  seed: int = 0) -> list[dict]:
    """Fit every baseline on `splits["train"]`, score it on the other splits.

    splits: name -> (params `[N, P]`, targets `[N]`, optional activation codes `[N]` as a third item).
    Returns rows {"baseline", "model", "<split>": score, ...}.
    """
    feats = {"statnn": lambda p, a: statnn_features(arch, p),
             "raw": lambda p, a: p,
             "sorted-invariant": lambda p, a: sorted_invariant_features(arch, p)}
    if probe is not None:
        feats["probe"] = lambda p, a: probe_features(arch, p, probe, a)
    models = _models(task, seed)
    rows = []
    for name, make_features in feats.items():
        X = {s: make_features(v[0], v[2] if len(v) > 2 else None).float().numpy() for s, v in splits.items()}
        y = {s: np.asarray(v[1]) for s, v in splits.items()}
        model = models[name]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn convergence chatter
            model.fit(X["train"], y["train"])
        row = {"baseline": name, "model": type(model[-1] if hasattr(model, "steps") else model).__name__}
        for s in splits:
            row[s] = score(task, y[s], model.predict(X[s]))
        rows.append(row)
    return rows
