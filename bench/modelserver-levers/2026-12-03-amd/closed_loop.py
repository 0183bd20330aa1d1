"""Experiment: closed-loop load at N callers from one asyncio process (grpc.aio, aiohttp), no Locust."""
import asyncio, sys, tempfile, time, statistics, json
from pathlib import Path
import aiohttp, grpc, uvloop
from loadtest import targets as servers
from loadtest.payloads import encode, path_for, test_images
from serving import protos

async def grpc_loop(target, body, key, n, seconds):
    chans = [grpc.aio.insecure_channel(target) for _ in range(n)]
    calls = [c.unary_unary("/tensorflow.serving.PredictionService/Predict", request_serializer=None, response_deserializer=None) for c in chans]
    md = (("x-api-key", key),) if key else None
    lat = []; stop = time.perf_counter() + seconds
    async def worker(call):
        while time.perf_counter() < stop:
            t = time.perf_counter(); await call(body, metadata=md, timeout=30); lat.append(time.perf_counter() - t)
    await asyncio.gather(*(worker(c) for c in calls))
    for c in chans: await c.close()
    return lat

async def rest_loop(url, body, ctype, key, n, seconds):
    headers = {"content-type": ctype}
    if key: headers["x-api-key"] = key
    lat = []; stop = time.perf_counter() + seconds
    async def worker():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read(); assert r.status == 200, r.status
                lat.append(time.perf_counter() - t)
    await asyncio.gather(*(worker() for _ in range(n)))
    return lat

def main():
    repo_in = Path(sys.argv[1]); n = int(sys.argv[2]); seconds = float(sys.argv[3]); rounds = int(sys.argv[4])
    out = Path(tempfile.mkdtemp(prefix="closed-")); logs = out / "logs"; logs.mkdir()
    onnx = servers.onnx_model(repo_in, Path.home() / ".cache" / "tensorgate" / "loadtest", logs / "tf2onnx.log")
    repo, _ = servers.work_repo(repo_in, onnx, out / "repo", {"cnn", "cnn_onnx"})
    image = test_images(1)[0][0]
    instances, jt = encode("instances", image[None]); gbody, _ = encode("grpc", image[None])
    running = []
    try:
        ms = servers.start_modelserver(repo / "models.config", ["cnn"], logs, True, 300); running.append(ms)
        gw = servers.start_gateway(repo, ms.grpc, ["cnn"], logs, 120); running.append(gw)
        peer = servers.start_baseline("peer", repo_in, onnx, logs, 120); running.append(peer)
        key = servers.API_KEY
        jobs = {
            "peer": lambda: rest_loop(peer.rest + path_for("instances", "cnn"), instances, jt, "", n, seconds),
            "gateway-rest": lambda: rest_loop(gw.rest + path_for("instances", "cnn"), instances, jt, key, n, seconds),
            "gateway-grpc": lambda: grpc_loop(gw.grpc, gbody, key, n, seconds),
            "modelserver-grpc": lambda: grpc_loop(ms.grpc, gbody, "", n, seconds),
            "modelserver-rest": lambda: rest_loop(ms.rest + path_for("instances", "cnn"), instances, jt, "", n, seconds),
        }
        import os, psutil
        from loadtest import profile as prof
        procs = {"ms": ms.managed.psutil, "gw": gw.managed.psutil, "peer": peer.managed.psutil, "me": psutil.Process()}
        def cpu():
            out = {}
            for name, p in procs.items():
                t = p.cpu_times(); c = t.user + t.system
                if name != "me":
                    for ch in p.children(recursive=True):
                        try: tt = ch.cpu_times(); c += tt.user + tt.system
                        except psutil.Error: pass
                out[name] = c
            return out
        if os.environ.get("PROFILE"):
            for k in os.environ["PROFILE"].split(","):
                spies = [prof.start(f"{k}-{n}", procs[nm].pid, seconds, out / f"{k}-{nm}.txt") for nm in ("ms", "gw")]
                uvloop.run(jobs[k]())
                for sp in spies: sp.process.wait(timeout=60)
                for nm in ("ms", "gw"):
                    print(prof.summarise(out / f"{k}-{nm}.txt", 25))
        if os.environ.get("JOBS"):
            jobs = {k: v for k, v in jobs.items() if k in os.environ["JOBS"].split(",")}
        res = {k: [] for k in jobs}
        usage = {k: [] for k in jobs}
        for k, j in jobs.items(): uvloop.run(j())
        for r in range(rounds):
            for k, j in jobs.items():
                before = cpu(); lat = uvloop.run(j()); after = cpu()
                usage[k].append({n: round(100 * (after[n] - before[n]) / seconds) for n in after})
                res[k].append((len(lat) / seconds, statistics.median(lat) * 1000))
        for k, v in res.items():
            print(k, "CPU %", usage[k])
            print(k, "model server CPU us/request", [round(1e6 * u["ms"] / 100 * seconds / (a * seconds)) for u, (a, _) in zip(usage[k], res[k])])
            print(f"{k:18s} req/s " + " ".join(f"{a:6.0f}" for a, _ in v) + "   p50 ms " + " ".join(f"{b:5.1f}" for _, b in v), flush=True)
    finally:
        for s in reversed(running): s.managed.stop()

async def _short(j):
    return await j()

if __name__ == "__main__":
    main()
