"""Fine-tuning for climate tasks: metrics, heads, training, baselines, scene inference."""

from __future__ import annotations

from sarlab.finetune.baselines import (
    otsu_water,
    otsu_water_baseline,
    random_forest_baseline,
    texture_features,
)
from sarlab.finetune.heads import LinearHead, ProgressiveDecoder, TaskHeads, UNet
from sarlab.finetune.inference import (
    blend_weights,
    predict_array,
    predict_scene,
    tile_starts,
    write_prediction,
)
from sarlab.finetune.knn import knn_baseline, knn_probe, patch_labels
from sarlab.finetune.metrics import (
    AUTOICE_WEIGHTS,
    autoice_scores,
    binary_iou_f1,
    mean_average_precision,
    r2_metric,
    weighted_f1,
)
from sarlab.finetune.model import (
    REGIMES,
    TASK_CLASSES,
    SegmentationModel,
    build_model,
    encoder_for_store,
    param_groups,
    set_regime,
    tasks_for_store,
)
from sarlab.finetune.protocol import label_efficiency, summarize
from sarlab.finetune.train import FinetuneResult, evaluate, finetune, sample_label_fraction

__all__ = [
    "AUTOICE_WEIGHTS",
    "REGIMES",
    "TASK_CLASSES",
    "FinetuneResult",
    "LinearHead",
    "ProgressiveDecoder",
    "SegmentationModel",
    "TaskHeads",
    "UNet",
    "autoice_scores",
    "binary_iou_f1",
    "blend_weights",
    "build_model",
    "encoder_for_store",
    "evaluate",
    "finetune",
    "knn_baseline",
    "knn_probe",
    "label_efficiency",
    "mean_average_precision",
    "otsu_water",
    "otsu_water_baseline",
    "param_groups",
    "patch_labels",
    "predict_array",
    "predict_scene",
    "r2_metric",
    "random_forest_baseline",
    "sample_label_fraction",
    "set_regime",
    "summarize",
    "tasks_for_store",
    "texture_features",
    "tile_starts",
    "weighted_f1",
    "write_prediction",
]
