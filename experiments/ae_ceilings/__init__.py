"""Study ae_ceilings: see config.yaml; run with `python -m experiments.ae_ceilings`."""
