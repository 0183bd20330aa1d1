#!/usr/bin/env bash
# Makes sure Fashion-MNIST's IDX files are on this machine (Debian's dataset-fashion-mnist package).
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [[ -n "${TENSORGATE_DATA:-}" && -d "${TENSORGATE_DATA}" ]]; then
  exit 0
fi
if [[ -f "$dir/train-images-idx3-ubyte.gz" ]]; then
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "Installing Fashion-MNIST (apt-get install dataset-fashion-mnist) ..."
  if ! apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq dataset-fashion-mnist
  fi
  exit 0
fi
cat >&2 <<MSG
Fashion-MNIST was not found in $dir.
Install it with:   sudo apt-get install dataset-fashion-mnist
or put the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in a folder and set TENSORGATE_DATA to it.
MSG
exit 1
