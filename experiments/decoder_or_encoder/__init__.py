"""Study decoder_or_encoder: see config.yaml; run with `python -m experiments.decoder_or_encoder`."""
