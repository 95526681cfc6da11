"""gmnae: symmetry-aware graph-metanetwork autoencoders for model zoos and model merging."""
__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it, `gmnae --version` prints it
