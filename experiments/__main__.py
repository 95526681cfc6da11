"""`python -m experiments`: list the studies; `python -m experiments NAME [--dry-run] …`: run one."""
import sys

from experiments.runner import main

sys.exit(main())
