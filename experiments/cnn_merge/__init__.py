"""Study cnn_merge: see config.yaml; run with `python -m experiments.cnn_merge`."""
