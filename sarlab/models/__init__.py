"""Encoders and their checkpoints (safetensors weights + a JSON model card)."""

from __future__ import annotations

from sarlab.models.checkpoint import (
    load_checkpoint,
    load_encoder,
    load_extra_tensors,
    model_card_hash,
    save_checkpoint,
    validate_model_card,
)
from sarlab.models.vit import PRESETS, ViTConfig, ViTEncoder, random_masking, vit_encoder

__all__ = [
    "PRESETS",
    "ViTConfig",
    "ViTEncoder",
    "load_checkpoint",
    "load_encoder",
    "load_extra_tensors",
    "model_card_hash",
    "random_masking",
    "save_checkpoint",
    "validate_model_card",
    "vit_encoder",
]
