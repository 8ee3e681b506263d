#!/usr/bin/env bash
# From a fresh machine to a trained, evaluated VAE with figures and a report.
#
# Installs what is missing (.venv with the pinned requirements; Debian's
# dataset-fashion-mnist, or TFDS's download where apt is unavailable), prepares the data,
# trains the default experiment (experiments/configs/fashion_mlp.py), evaluates it (test
# NLL with K importance samples, ELBO, latent diagnostics, figures) and prints where the
# report and figures are. Running it again resumes or reuses what is already there.
#
# Settings (environment variables):
#   WORKDIR=runs/quickstart   where the run goes
#   EPOCHS=8                  training epochs (the config's default is 20)
#   K=1000                    importance samples for the test NLL (the standard is 5000)
#   COMPUTE_DTYPE=bfloat16    precision of the networks' products in training and evaluation:
#                             bfloat16 (mixed precision, the fastest setting whose quality
#                             matches float32 here: docs/benchmarks.md) or float32
#   DATA_DIR=                 TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"

WORKDIR="${WORKDIR:-runs/quickstart}"
EPOCHS="${EPOCHS:-8}"
K="${K:-1000}"
COMPUTE_DTYPE="${COMPUTE_DTYPE:-bfloat16}"
DATA_DIR="${DATA_DIR:-}"
CONFIG=experiments/configs/fashion_mlp.py
SOURCE=local
started=$(date +%s)

ensure_venv

log "data: Fashion-MNIST"
if [ ! -d /usr/share/datasets/fashion-mnist ] && ! ensure_debian_package dataset-fashion-mnist; then
  log "apt is not usable here: falling back to TFDS's download (needs internet and TensorFlow)"
  "$PY" -m pip install --quiet tensorflow
  SOURCE=tfds
fi
"$PY" scripts/prepare_data.py --dataset=fashion_mnist --source="$SOURCE" --data_dir="$DATA_DIR"

log "train: $CONFIG for $EPOCHS epochs in $WORKDIR ($COMPUTE_DTYPE products)"
"$PY" -m experiments.train --config="$CONFIG" --workdir="$WORKDIR" \
  --config.training.num_epochs="$EPOCHS" --config.data.source="$SOURCE" \
  --config.data.data_dir="$DATA_DIR" --config.model.compute_dtype="$COMPUTE_DTYPE" \
  --config.evaluation.compute_dtype="$COMPUTE_DTYPE"

log "evaluate: test NLL with K=$K importance samples, diagnostics, figures"
"$PY" -m experiments.evaluate --workdir="$WORKDIR" --num_importance_samples="$K" \
  --compute_dtype="$COMPUTE_DTYPE"

log "done in $(( $(date +%s) - started )) s"
echo
echo "report:  $WORKDIR/report.json  (table: $WORKDIR/report.md)"
echo "figures: $WORKDIR/figures/"
ls -1 "$WORKDIR"/figures/*.png | sed 's/^/  /'
