#!/bin/bash
# ABAB, 3 pairs: the gateway's CPU per call at e799fef (before the coalescer's waiters lost their
# timeout + shield) against the working tree, REST and gRPC at 32 connections, against the fake upstream.
# Run from the repository root on a quiet machine.
set -e
[ -d /tmp/base ] || git worktree add -q /tmp/base e799fef
for i in ${PAIRS:-1 2 3}; do
  for root in /tmp/base "$PWD"; do
    echo "== $i $root $(date -u +%T) load $(cut -d' ' -f1 /proc/loadavg)"
    .venv/bin/python -m loadtest.gateway_cpu --root "$root" --connections 32 --protocols rest,grpc 2>&1 | grep connections
  done
done
