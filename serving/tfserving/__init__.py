"""TensorFlow Serving's REST API, written once for the model server and the gateway.

- ``urls``: which call a method and path ask for (TF Serving's URL patterns and their errors).
- ``decode``: request JSON -> numpy arrays (row ``instances`` / columnar ``inputs``, ``b64``).
- ``encode``: arrays -> TF Serving's answer JSON, byte for byte; ``error_body``.
- ``examples``: classify / regress JSON -> tf.Example protos.
- ``messages``: GetModelStatus / GetModelMetadata answers as TF Serving prints them.
- ``rest``: the REST front over a ``Backend`` (decode once, predict, encode) and its ASGI helpers.
- ``values``: TF Serving's printing of JSON values and floats, shared by the others.
"""

from serving.tfserving.decode import RequestFormat, decode_predict_request, parse_json_object
from serving.tfserving.encode import encode_predict_response, error_body

__all__ = ["RequestFormat", "decode_predict_request", "encode_predict_response", "error_body", "parse_json_object"]
