"""Model names, importable without TensorFlow (the command line checks them before the slow imports)."""

MODEL_NAMES = ("cnn", "lstm", "transformer", "ensemble")
TRAINABLE_NAMES = ("cnn", "lstm", "transformer")  # `ensemble` is built from trained members
