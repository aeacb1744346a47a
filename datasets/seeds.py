"""Every seed of a pretraining run, from the run's ``--seed`` and where the run stands.

Each formula depends on (seed, epoch) and at most one more position: the epoch's image order is the same
on every rank, an image's crop boxes do not depend on which worker or batch reads it, and a rank's
augmentation draws restart each epoch. So a resumed run, from an epoch's start or (with the draw
state saved) from inside it, draws exactly what a continuous run would have. The numbers are part
of what a run is: changing one changes every run's data order or views, and an older run resumed
would no longer draw what it would have.
"""
from __future__ import annotations


def order_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order of the images (``loaders.epoch_permutation``)."""
    return seed * 100_003 + epoch


def crop_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of image ``index``'s two crop boxes in epoch ``epoch`` (``loaders.view_generator``)."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + index


def draw_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of rank ``rank``'s augmentation draws in epoch ``epoch``: its device and host generators
    (``utils.training.run.Run.set_epoch``)."""
    return (seed * 1_000_003 + epoch) * 8191 + rank
