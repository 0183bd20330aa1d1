"""Model builders by name: ``create_model("cnn", config)``; an unknown name lists the valid ones."""

from training.models.registry import MODEL_NAMES, ModelConfig, create_model, default_config

__all__ = ["MODEL_NAMES", "ModelConfig", "create_model", "default_config"]
