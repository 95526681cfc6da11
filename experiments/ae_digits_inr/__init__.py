"""Study ae_digits_inr: see config.yaml; run with `python -m experiments.ae_digits_inr`."""
