"""Study downstream: see config.yaml; run with `python -m experiments.downstream`."""
