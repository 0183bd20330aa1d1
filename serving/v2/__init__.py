"""The Open Inference Protocol (KServe v2): datatypes, the REST and gRPC codecs, model metadata.

Protocol code only, shared and TF-free; the gateway's fronts (``serving.gateway.v2``) use it.
"""
