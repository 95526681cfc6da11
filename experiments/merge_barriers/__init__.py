"""Study merge_barriers: see config.yaml; run with `python -m experiments.merge_barriers`."""
