#!/bin/bash
# ABAB, 3 pairs: the gateway's CPU per call at fe1d002 (the code of the 2026-11-26 AMD load test) against
# the working tree, gRPC and REST, 1 and 32 connections, against the fake upstream (loadtest.gateway_cpu).
# Run from the repository root on a quiet machine.
set -e
[ -d /tmp/old ] || git worktree add -q /tmp/old fe1d002
for i in 1 2 3; do
  for root in /tmp/old "$PWD"; do
    echo "== $i $root $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/python -m loadtest.gateway_cpu --root "$root" --connections 1,32 --protocols grpc,rest --requests 4000 \
      2>&1 | grep -E 'connections|failed|rror' | head -8
  done
done
