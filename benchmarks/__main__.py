"""`python -m benchmarks [--only SECTION ...] [--quick] [--out FILE]`, run from the repository root (`make bench`)."""
import argparse
import sys

from . import add_arguments, run

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
