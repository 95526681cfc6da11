"""Study merge_finetune: see config.yaml; run with `python -m experiments.merge_finetune`."""
