"""Judging a trained autoencoder and merged networks: interpolation curves and barriers on pair sets
(`merge_evaluation.py`), merging with the autoencoder (`ae_merge.py`) and K at once (`kway_eval.py`), CNN
fidelity (`fidelity.py`), downstream baselines, the training-time callback, report.html and the
runs table of `gmnae report`. Sits above `gmnae.training` (it loads models) and below `gmnae.commands`."""
