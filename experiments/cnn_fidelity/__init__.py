"""Study cnn_fidelity: see config.yaml; run with `python -m experiments.cnn_fidelity`."""
