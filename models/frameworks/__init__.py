"""Framework registry: ``--framework`` name -> class (one small file per framework, which declares its
hyper-parameters and their flags in its ``Options``)."""
from .barlow_twins import BarlowTwins
from .base import Framework, Progress
from .byol import BYOL
from .moco import MoCo
from .mocov3 import MoCoV3
from .options import FrameworkOptions, option
from .simclr import SimCLR
from .simsiam import SimSiam
from .swav import SwAV

FRAMEWORKS: dict[str, type[Framework]] = {
    "moco": MoCo,
    "mocov3": MoCoV3,
    "simclr": SimCLR,
    "simsiam": SimSiam,
    "byol": BYOL,
    "barlow_twins": BarlowTwins,
    "swav": SwAV,
}

__all__ = ["FRAMEWORKS", "Framework", "FrameworkOptions", "Progress", "option"]
