"""Transfer learning on the shipped CNN: labelled photos in, a servable model directory out.

``train(TrainConfig(data=..., out=...))`` loads a class-per-folder tree or a
Grocery Store list file, extracts (cached) backbone features of the serving
view and of augmented views, trains a classification head in numpy (and
optionally fine-tunes the backbone's last convolution), and writes one ONNX
model (backbone + head) with its manifest. Never imports torch.
"""

from __future__ import annotations

from inference.train.augment import AugmentConfig
from inference.train.dataset import Dataset, Sample, load_dataset
from inference.train.errors import DatasetError, TrainError
from inference.train.head import HeadConfig
from inference.train.torch_finetune import TailFinetuneConfig
from inference.train.trainer import TrainConfig, TrainResult, default_cache_dir, train

__all__ = [
    "AugmentConfig",
    "Dataset",
    "DatasetError",
    "HeadConfig",
    "Sample",
    "TailFinetuneConfig",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "default_cache_dir",
    "load_dataset",
    "train",
]
