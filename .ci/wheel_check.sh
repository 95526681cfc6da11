#!/usr/bin/env bash
# The package as a user installs it: build a wheel, install it (not editable) into a fresh virtualenv,
# and from a folder outside the checkout build a tiny zoo and train one epoch on it. Catches what an
# editable install hides: files the wheel does not ship (the configs), paths read relative to the checkout.
#
# The fresh venv gets the wheel and nothing else; the dependencies are borrowed from $PY's environment
# through a .pth file (added after the install, so the editable gmnae there is neither seen nor touched):
# installing torch & co. again would take minutes and the network, and tests nothing of ours.
#   .ci/wheel_check.sh                  # PY=.venv/bin/python by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/gmnae-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

"$PY" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/dist" .
rm -rf build  # setuptools' scratch folder in the checkout
wheel=$(ls "$work"/dist/gmnae-*.whl)
echo "wheel: $(basename "$wheel")"
# zipfile, not `unzip -l | grep -q`: under pipefail grep's early exit can SIGPIPE unzip and fail a good wheel
# (and a fresh machine need not have unzip at all).
"$PY" - "$wheel" <<'EOF_PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
needed = ["gmnae/configs/train.yaml", "gmnae/configs/dataset/digits-inr.yaml", "gmnae/zoo/siren_fit.c",
          "gmnae/nn/gated_edge.c", "gmnae/merge/lap_dual.c"]
missing = [n for n in needed if n not in names]
if missing:
    sys.exit(f"the wheel ships no {', '.join(missing)} (pyproject.toml [tool.setuptools.package-data]); it holds "
             f"{len(names)} files")
EOF_PY

"$PY" -m venv --without-pip "$work/venv"
"$PY" -m pip --python "$work/venv/bin/python" install --quiet --no-deps "$wheel"
site_of() { "$1" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"; }
site_of "$PY" > "$(site_of "$work/venv/bin/python")/borrowed-dependencies.pth"

mkdir "$work/elsewhere"
cd "$work/elsewhere"  # nothing of the checkout on the path
unset PYTHONPATH GMNAE_CONFIG_PATH
gmnae="$work/venv/bin/gmnae"
where=$("$work/venv/bin/python" -c "import gmnae; print(gmnae.__file__)")
case "$where" in "$work/venv/"*) ;; *) echo "gmnae imported from $where, not from the installed wheel" >&2; exit 1;; esac
"$gmnae" --version
"$gmnae" zoo build digits-inr --size 20 --steps 5 --out zoo/tiny --no-progress
"$gmnae" train dataset.zoo=zoo/tiny runs_dir=runs run_name=wheel trainer.max_epochs=1 data.batch_size=8 \
  model.encoder.d=16 model.encoder.n_layers=2 model.encoder.latent_dim=16 evaluation.enabled=false \
  trainer.enable_progress_bar=false
test -f runs/wheel/checkpoints/last.ckpt
echo "wheel check passed in $(( $(date +%s) - start ))s"
