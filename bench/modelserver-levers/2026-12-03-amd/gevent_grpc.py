"""Client-side cost of gRPC under gevent: init_gevent (what Locust's GrpcUser uses) vs a native-thread hand-off."""
import sys
mode = sys.argv[1]; target = sys.argv[2]; n = int(sys.argv[3]); seconds = float(sys.argv[4])
from gevent import monkey
monkey.patch_all()
import gevent, time, grpc
if mode == "init_gevent":
    import grpc.experimental.gevent as gg
    gg.init_gevent()
from loadtest.payloads import encode, test_images
image = test_images(1)[0][0]
body, _ = encode("grpc", image[None])
chans = [grpc.insecure_channel(target) for _ in range(n)]
calls = [c.unary_unary("/tensorflow.serving.PredictionService/Predict", request_serializer=None, response_deserializer=None) for c in chans]
pool = gevent.get_hub().threadpool
pool.maxsize = max(pool.maxsize, n)
count = [0]
stop = time.perf_counter() + seconds
def worker(call):
    while time.perf_counter() < stop:
        if mode == "init_gevent":
            call(body, timeout=30)
        else:
            pool.apply(call, (body,), {"timeout": 30})
        count[0] += 1
import psutil
p = psutil.Process(); c0 = sum(p.cpu_times()[:2]); t0 = time.perf_counter()
gevent.joinall([gevent.spawn(worker, c) for c in calls])
el = time.perf_counter() - t0; cpu = sum(p.cpu_times()[:2]) - c0
print(f"{mode:12s} n={n}: {count[0]/el:7.0f} req/s, client CPU {1e6*cpu/count[0]:5.0f} us/request", flush=True)
