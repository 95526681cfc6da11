"""Study kway: see config.yaml; run with `python -m experiments.kway`."""
