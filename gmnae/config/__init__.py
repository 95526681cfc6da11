"""Configuration: one OmegaConf tree per run, composed from the YAML groups in `gmnae/configs/`
(`dataset=`, `model=`, `trainer=`, `experiment=`), a user's `--config-dir` overlay and `key=value`
overrides (`load.py`), and checked against typed dataclasses (`schema.py`) before anything runs."""
