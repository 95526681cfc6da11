"""python -m experiments.fmnist_inr [--dry-run] [--only TABLE] [--seeds 0,1,2] [--out DIR]: regenerate this study's tables."""
import sys

from experiments.runner import run_study

sys.exit(run_study("fmnist_inr"))
