"""Framework registry: ``--framework`` name -> class (one small file per framework)."""
from .barlow_twins import BarlowTwins
from .base import Framework, FrameworkOptions, Progress
from .byol import BYOL
from .moco import MoCo
from .mocov3 import MoCoV3
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

__all__ = ["FRAMEWORKS", "Framework", "FrameworkOptions", "Progress"]
