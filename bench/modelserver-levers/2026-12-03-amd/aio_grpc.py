import sys, asyncio, time, grpc, uvloop, psutil
from loadtest.payloads import encode, test_images
target = sys.argv[1]; n = int(sys.argv[2]); seconds = float(sys.argv[3])
body, _ = encode("grpc", test_images(1)[0][0][None])
async def main():
    chans = [grpc.aio.insecure_channel(target) for _ in range(n)]
    calls = [c.unary_unary("/tensorflow.serving.PredictionService/Predict", request_serializer=None, response_deserializer=None) for c in chans]
    count = [0]; stop = time.perf_counter() + seconds
    async def w(call):
        while time.perf_counter() < stop:
            await call(body, timeout=30); count[0] += 1
    p = psutil.Process(); c0 = sum(p.cpu_times()[:2]); t0 = time.perf_counter()
    await asyncio.gather(*(w(c) for c in calls))
    el = time.perf_counter() - t0; cpu = sum(p.cpu_times()[:2]) - c0
    print(f"aio          n={n}: {count[0]/el:7.0f} req/s, client CPU {1e6*cpu/count[0]:5.0f} us/request", flush=True)
uvloop.run(main())
