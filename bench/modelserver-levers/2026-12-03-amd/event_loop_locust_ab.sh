#!/bin/bash
# Locust A/B of the model server's event loop: asyncio vs uvloop, alternating, same targets and steps.
cd /work/main
export PATH=$PWD/.venv/bin:$PATH
Q=$(ls -d .pytest_cache/tensorgate-quick-repo/*/ | head -1)
for round in 1 2; do
  for loop in asyncio uvloop; do
    echo "=== round $round loop $loop $(date -u +%H:%M:%S)"
    TENSORGATE_MODELSERVER_EVENT_LOOP=$loop .venv/bin/python -m loadtest --repo $Q --targets peer,modelserver-rest,modelserver-grpc,gateway-rest,gateway-grpc --users 1,16,64 --duration 15s --out /tmp/s12/ab/$loop-$round 2>&1 | tail -3
  done
done
echo "=== done $(date -u +%H:%M:%S)"
