#!/usr/bin/env bash
# TEST a checkpoint: per-tag P@10 / ROC-AUC / AP, written to RESULT_PATH (per_tag.csv, summary.json, scores.npy).
#   bash eval.sh                                                   # the checkpoint run.sh trained on the demo
#   MODEL_LOAD_PATH=ckpts/b-w-hybrid-google/epoch=174.ckpt INPUT_TYPE=hybrid DATA_PATH=/data/msd100 bash eval.sh
# Environment: DATA_PATH, INPUT_TYPE, W2V_TYPE, MODEL_LOAD_PATH, RESULT_PATH, IS_SUBSET, EXTRA_ARGS (any main.py flag).
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
DATA_PATH=${DATA_PATH:-data/demo}
INPUT_TYPE=${INPUT_TYPE:-spec}
W2V_TYPE=${W2V_TYPE:-google}
MODEL_LOAD_PATH=${MODEL_LOAD_PATH:-./checkpoints/b-w-$INPUT_TYPE-$W2V_TYPE/best.ckpt}
RESULT_PATH=${RESULT_PATH:-$(dirname "$MODEL_LOAD_PATH")/test}
# shellcheck disable=SC2086
.venv/bin/python -u main.py \
  --mode TEST \
  --input_type "$INPUT_TYPE" \
  --w2v_type "$W2V_TYPE" \
  --is_subset "${IS_SUBSET:-False}" \
  --data_path "$DATA_PATH" \
  --model_load_path "$MODEL_LOAD_PATH" \
  --result_path "$RESULT_PATH" \
  ${EXTRA_ARGS:-}
