#!/usr/bin/env bash
# The thread-setting matrix behind the model server's default (docs/modelserver.md, "Threads").
# Usage: bash bench/modelserver-threads/run.sh QUICK_REPO ONNX_VERSION_DIR [FULL_CNN_VERSION_DIR] > results.jsonl
# QUICK_REPO: the tests' quick models (.pytest_cache/tensorgate-quick-repo/<hash>, what the load test
# serves); ONNX_VERSION_DIR: its CNN converted to ONNX (the load test's cache holds one).
set -euo pipefail
quick=$1 onnx=$2 full=${3:-}
py() { .venv/bin/python bench/modelserver-threads/calls.py "$@" 2>/dev/null | tail -1; }
for setting in "2 2" "1 2" "1 1" "2 1"; do py "$quick/cnn/1" tensorflow $setting; done
for setting in "2 2" "1 2"; do TF_ENABLE_ONEDNN_OPTS=0 py "$quick/cnn/1" tensorflow $setting | sed 's/^{/{"onednn": false, /'; done
for model in lstm transformer; do for setting in "2 2" "1 2"; do py "$quick/$model/1" tensorflow $setting; done; done
py "$quick/cnn/1" tensorflow 2 2 spin
py "$quick/cnn/1" tensorflow 1 -1
for setting in "2 1" "1 1"; do py "$onnx" onnx $setting; done
if [[ -n $full ]]; then for setting in "2 2" "1 2"; do py "$full" tensorflow $setting; done; fi
