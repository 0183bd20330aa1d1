"""The tensorgate gateway: TF Serving-compatible REST and gRPC fronts over TF Serving's gRPC API.

It never imports TensorFlow: TF Serving's messages come from ``serving.protos`` (a descriptor set).
"""
