"""Merging: Git Re-Basin weight matching, interpolation curves, loss barriers, pair sets (docs/design.md §6).

    from gmnae.merge import match_weights, method_path, linear_path, InrEvaluator, barrier_metrics
    res = match_weights(arch, a, b, "wm-signed")             # batched over pairs [n, P]
    path = method_path(arch, a, b, "wm", lambda_grid(25))    # [n, 25, P]
    curves = evaluator(path)                                  # {"mse": [n, 25], ...}
    barrier_metrics(curves[evaluator.primary])               # {"barrier": [n], ...}
    merge_many(arch, nets).merged                             # K-way: nets [K, P] or [G, K, P]
"""
from .barriers import auc, barrier, barrier_linear, barrier_metrics, endpoint_line, max_loss
from .interpolation import (ClassifierEvaluator, InrEvaluator, interpolation_curves, lambda_grid, linear_path,
                            method_curves, method_path, zoo_evaluator)
from .kway import KWAY_METHODS, MergeManyResult, merge_many, sign_canonicalisation, weighted_mean
from .assignment import available_solvers, certify_optimal, choose_solver, hungarian_torch, solve_assignments
from .matching import (MATCH_METHODS, METHODS, MatchResult, align, check_method, default_method, match_weights, transform,
                       unit_normalisation)
from .reference_matching import weight_matching_reference
from .pairs import (PairSet, SplitNetworks, evaluation_pair_sets, evaluation_pair_types, independent_indices,
                    orbit_pairs, orbit_symmetries, split_pairs, zoo_pairs)

__all__ = [
    "auc", "barrier", "barrier_linear", "barrier_metrics", "endpoint_line", "max_loss",
    "ClassifierEvaluator", "InrEvaluator", "interpolation_curves", "lambda_grid", "linear_path", "method_curves",
    "method_path", "zoo_evaluator",
    "MATCH_METHODS", "METHODS", "MatchResult", "align", "available_solvers", "certify_optimal", "check_method",
    "choose_solver", "default_method", "hungarian_torch", "match_weights", "solve_assignments", "transform",
    "unit_normalisation", "weight_matching_reference",
    "PairSet", "SplitNetworks", "evaluation_pair_sets", "evaluation_pair_types", "independent_indices", "orbit_pairs",
    "orbit_symmetries", "split_pairs", "zoo_pairs",
    "KWAY_METHODS", "MergeManyResult", "merge_many", "sign_canonicalisation", "weighted_mean",
]
