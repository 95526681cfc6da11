"""Models and their training: the LightningModules (`module.py` base, `autoencoder.py`, `predictor.py` for
downstream tasks), their losses and optimiser schedule, the builder that picks one from a config
(`model_builder.py`), run folders and the CSV log. Networks themselves (ScaleGMN, decoder, probe) live in
`gmnae.nn`; the `gmnae train` command that wires these to a Trainer is `gmnae.commands.train`."""
