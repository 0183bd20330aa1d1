"""Picture preparation: one definition (docs/pictures.md, constants in ``spec``) of how a picture
becomes the model's 28x28 input, following Fashion-MNIST's recipe. The gateway uses this numpy
version; the SavedModels' ``serving_bytes`` signature runs the same steps in TensorFlow ops
(``training.picture_graph``)."""

from serving.pictures.decode import Planes, decode
from serving.pictures.exif import orientation
from serving.pictures.prepare import Preparation, prepare

__all__ = ["Planes", "Preparation", "decode", "orientation", "prepare"]
