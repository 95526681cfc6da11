"""Research studies behind the tables in docs/results/: not part of the installed package.

Each study is a folder `experiments/<study>/` with a `config.yaml` (the commands that produce its runs and
the commands that print its tables) and, where the study needs code of its own, that code as modules
(run as `python -m experiments.<study>.<module>` from the repository root). One command regenerates a
study's tables into its results file:

    python -m experiments.<study> [--dry-run] [--only TABLE] [--seeds 0,1,2] [--out DIR]
    make experiment NAME=<study> [ARGS="--dry-run"]

`python -m experiments` lists the studies. The runner (experiments/runner.py) writes
`DIR/results.md` (default `runs/experiments/<study>/`) with the commit, the machine load and the seeds
beside every table, and each command's output under `DIR/logs/`. The measured tables, with their
commit, load and seeds as they were recorded, live in the study's `docs/results/<file>.md`.
"""
