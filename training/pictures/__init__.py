"""Picture preparation in TensorFlow ops for the ``serving_bytes`` signature: the graph twin of
``serving.pictures`` (one definition: docs/pictures.md and ``serving.pictures.spec``)."""

from training.pictures.prepare import prepare_picture

__all__ = ["prepare_picture"]
