"""Systems the gateway is compared with, each serving TF Serving's ``/v1/models/<name>:predict`` (row
``instances`` in, ``{"predictions": [{"class_id": k, "probabilities": [...]}]}`` out) on one port:

- ``naive``: the tutorial pattern, FastAPI + pydantic + Keras ``model.predict`` per request;
- ``handmade``: the best one careful process: Starlette-level FastAPI route, orjson, onnxruntime called
  directly on the event loop (sub-millisecond model), no gateway hop, no features;
- ``peer``: LitServe with its request batching, running the same ONNX model.

Each answers ``GET /healthz`` 200 once the model is loaded (LitServe: its own ``/health``).
"""
