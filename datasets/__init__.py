"""Datasets: pretraining images (+ labelled k-NN splits), downstream sets, the built-in colordigits.

The names below load their module on first use (PEP 562), so importing the torch-free
``datasets.catalog`` alone does not pull in torch and torchvision.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {"DataError": "errors", "DeviceBatches": "loaders", "PRETRAIN_DATASETS": "pretrain",
         "PretrainData": "pretrain", "TensorImages": "pretrain", "build_pretrain_data": "pretrain",
         "make_colordigits": "colordigits", "worker_crop_loader": "loaders"}
__all__ = ["DataError", "DeviceBatches", "PRETRAIN_DATASETS", "PretrainData", "TensorImages",
           "build_pretrain_data", "make_colordigits", "worker_crop_loader"]

if TYPE_CHECKING:
    from .colordigits import make_colordigits
    from .errors import DataError
    from .loaders import DeviceBatches, worker_crop_loader
    from .pretrain import PRETRAIN_DATASETS, PretrainData, TensorImages, build_pretrain_data


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
