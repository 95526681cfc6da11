"""`python -m gmnae ...` is the `gmnae` command (and what `torchrun -m gmnae train ...` launches)."""
import sys

from .cli import main

sys.exit(main())
