"""Datasets: pretraining images (+ labelled k-NN splits), downstream sets, the built-in colordigits."""
from .colordigits import make_colordigits
from .errors import DataError
from .loaders import DeviceBatches, worker_crop_loader
from .pretrain import PRETRAIN_DATASETS, PretrainData, TensorImages, build_pretrain_data

__all__ = ["DataError", "DeviceBatches", "PRETRAIN_DATASETS", "PretrainData", "TensorImages",
           "build_pretrain_data", "make_colordigits", "worker_crop_loader"]
