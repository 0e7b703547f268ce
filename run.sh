#!/usr/bin/env bash
# Train the acoustic model with balanced-weighted sampling (the paper's best setting), then TEST its best checkpoint.
#   bash run.sh                                  # embedded demo dataset: set up, build it if missing, train, test
#   bash run.sh                                  # again: resumes from MODEL_SAVE_PATH/last.ckpt, then tests again
#   DATA_PATH=/data/msd100 bash run.sh           # your data (e.g. the released splits): the original's settings
#   LOGGER=mlflow bash run.sh                    # track the run in ./mlruns.db; ends with the dashboard's command
#   INPUT_TYPE=hybrid NEPTUNE_PROJECT=me/tags NEPTUNE_API_KEY=... bash run.sh   # hosted Neptune is gone: offline mode
# Environment: DATA_PATH, MODEL_SAVE_PATH, INPUT_TYPE (spec|cf|hybrid), W2V_TYPE (google|music), IS_SUBSET,
# LOGGER (tensorboard|csv|mlflow|neptune|none), MLFLOW_URI, NEPTUNE_PROJECT, NEPTUNE_API_KEY,
# EXTRA_ARGS (any other main.py flags, e.g. "--n_epochs 50 --devices 2").
# On the demo without a GPU it uses a 2-core CPU budget (a CNN of base width 32 instead of 128, batch 64, 10 epochs
# of 2,048 samples, lr 1e-3, and on CPUs with bf16 instructions bf16 autocast with channels-last tensors, about 3x
# faster than float32); with a GPU, or on your data, the original's settings (float32).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
PY=.venv/bin/python
DEMO=data/demo
DATA_PATH=${DATA_PATH:-$DEMO}
INPUT_TYPE=${INPUT_TYPE:-spec}
W2V_TYPE=${W2V_TYPE:-google}
MODEL_SAVE_PATH=${MODEL_SAVE_PATH:-./checkpoints/b-w-$INPUT_TYPE-$W2V_TYPE}
if [ "$DATA_PATH" = "$DEMO" ]; then
  $PY make_demo_data.py --out "$DEMO"   # resumes an interrupted build; returns at once when it is complete
fi
budget=()
if [ "$DATA_PATH" = "$DEMO" ] && ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  budget=(--n_channels 32 --batch_size 64 --epoch_size 2048 --n_epochs 10 --lr 1e-3)
  if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then
    budget+=(--precision bf16-mixed --channels_last True)
  fi
fi
neptune=()
[ -n "${NEPTUNE_PROJECT:-}" ] && neptune+=(--neptune_project "$NEPTUNE_PROJECT")
if [ -n "${NEPTUNE_API_KEY:-}" ]; then  # through the environment, not the command line (where ps would show it)
  export NEPTUNE_API_TOKEN="${NEPTUNE_API_TOKEN:-$NEPTUNE_API_KEY}"
  neptune+=(--logger neptune)
fi
tracking=()
[ -n "${LOGGER:-}" ] && tracking+=(--logger "$LOGGER")
[ -n "${MLFLOW_URI:-}" ] && tracking+=(--mlflow_uri "$MLFLOW_URI")
common=(--input_type "$INPUT_TYPE" --w2v_type "$W2V_TYPE" --is_subset "${IS_SUBSET:-False}" --data_path "$DATA_PATH")
# a second run.sh resumes the first from its last.ckpt: an interrupted TRAIN goes on, a finished one trains no further
# (main.py refuses to mix a new run into a folder holding another's checkpoints), and TEST runs again
resume=()
[ -f "$MODEL_SAVE_PATH/last.ckpt" ] && resume=(--ckpt_path "$MODEL_SAVE_PATH/last.ckpt")
# shellcheck disable=SC2086
$PY -u main.py \
  --mode TRAIN \
  --is_weighted True \
  --is_balanced True \
  "${common[@]}" \
  --model_save_path "$MODEL_SAVE_PATH" \
  "${budget[@]}" "${neptune[@]}" "${tracking[@]}" "${resume[@]}" ${EXTRA_ARGS:-}
# shellcheck disable=SC2086
$PY -u main.py --mode TEST "${common[@]}" --model_load_path "$MODEL_SAVE_PATH/best.ckpt" \
  --result_path "$MODEL_SAVE_PATH/test" ${EXTRA_ARGS:-}
# with MLflow tracking (LOGGER=mlflow or --logger mlflow in EXTRA_ARGS), the last line opens its dashboard
if [ "${LOGGER:-}" = mlflow ] || [[ " ${EXTRA_ARGS:-} " == *" --logger mlflow "* ]]; then
  uri=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1])).get("mlflow_tracking_uri", ""))' \
        "$MODEL_SAVE_PATH/config.json")
  echo "# the run is tracked in ${uri:-sqlite:///mlruns.db}; its dashboard, on http://127.0.0.1:5000:"
  echo ".venv/bin/mlflow ui --backend-store-uri ${uri:-sqlite:///mlruns.db} --host 127.0.0.1 --port 5000"
fi
