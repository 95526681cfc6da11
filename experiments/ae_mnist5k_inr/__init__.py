"""Study ae_mnist5k_inr: see config.yaml; run with `python -m experiments.ae_mnist5k_inr`."""
