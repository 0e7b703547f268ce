#!/usr/bin/env bash
# Create .venv and install requirements.txt into it; does nothing when both are already in place.
#   bash setup.sh            # then use .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
links=()
# The CPU wheel of torch ships on disk on these machines; elsewhere pip takes it from PyPI.
[ -d /opt/wheels ] && links=(--find-links /opt/wheels)
.venv/bin/python -m pip install -q --disable-pip-version-check "${links[@]}" -r requirements.txt
# tinysoundfont declares pyaudio (live playback, needs portaudio headers) which we never use: skip it.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps tinysoundfont==0.3.7
echo "$want" > "$stamp"
