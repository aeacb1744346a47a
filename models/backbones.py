"""Backbones (``--model``): torchvision ResNets, CIFAR-stem ResNets and MoCo-v3-style ViTs.

All keep torchvision's parameter names, so ``ckpt['backbone']`` loads into a plain torchvision
model with only the classifier (``fc`` / ``heads``) missing.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torchvision import models as tvm

BACKBONE_DIMS = {"resnet18": 512, "resnet50": 2048, "cifar_resnet18": 512, "cifar_resnet50": 2048,
                 "vit_small": 384, "vit_base": 768, "mini_resnet": 128}
BACKBONES = tuple(BACKBONE_DIMS)
# torch.compile's modes (--compile-mode): "reduce-overhead" and "max-autotune" replay CUDA graphs
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _resnet(name: str, cifar_stem: bool, torchvision_init: bool) -> tuple[nn.Module, int]:
    net = getattr(tvm, name)(weights=None, zero_init_residual=True)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    if not torchvision_init:
        # Upstream re-initialises every conv with PyTorch's default (kaiming-uniform) init.
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


class MiniResNet(nn.Module):
    """ResNet-10 (one BasicBlock per stage) at a quarter width (16-32-64-128), CIFAR stem, 128-d.

    Not part of the paper: it makes a real pretraining finish in minutes on a laptop CPU
    (the README's quick start and the test-suite's end-to-end runs).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None if stride == 1 and cin == w else nn.Sequential(
                nn.Conv2d(cin, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            layers.append(nn.Sequential(tvm.resnet.BasicBlock(cin, w, stride, down)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, tvm.resnet.BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def sincos_pos_embed(grid: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [1, 1 + grid^2, dim] with a zero row for CLS (MoCo v3).

    Patches are numbered row by row; as in MoCo v3's vits.py, the first half of the channels encodes
    the patch's row, the second half its column.
    """
    if dim % 4:
        raise ValueError(f"ViT width must be divisible by 4 for the 2-D sin-cos embedding, got {dim}")
    row, col = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                              indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    out_r, out_c = row.flatten()[:, None] * omega[None], col.flatten()[:, None] * omega[None]
    emb = torch.cat([out_r.sin(), out_r.cos(), out_c.sin(), out_c.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), emb], dim=0)[None]


def _mocov3_vit_init(net: tvm.VisionTransformer) -> None:
    """MoCo v3's initialisation (its vits.py), on torchvision's module names.

    Q, K and V (torchvision keeps them in one ``in_proj_weight``) are each Xavier-uniform over their
    own D x D block; every other linear layer is Xavier-uniform; all their biases zero; the CLS
    token N(0, 1e-6).
    """
    for m in net.modules():
        if isinstance(m, nn.MultiheadAttention):
            d = m.in_proj_weight.shape[1]
            bound = math.sqrt(6.0 / float(m.in_proj_weight.shape[0] // 3 + d))
            nn.init.uniform_(m.in_proj_weight, -bound, bound)
            nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, nn.Linear):  # the attention's out_proj and the MLP blocks
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    nn.init.normal_(net.class_token, std=1e-6)


def _vit(width: int, heads: int, image_size: int, patch: int = 16) -> tuple[nn.Module, int]:
    if image_size % patch:
        raise ValueError(f"--model vit_*: image size {image_size} is not a multiple of the patch size {patch}")
    net = tvm.VisionTransformer(image_size=image_size, patch_size=patch, num_layers=12, num_heads=heads,
                                hidden_dim=width, mlp_dim=4 * width)
    net.heads = nn.Identity()
    _mocov3_vit_init(net)
    pos = net.encoder.pos_embedding
    pos.data.copy_(sincos_pos_embed(image_size // patch, width))
    pos.requires_grad_(False)
    # MoCo v3: patch projection initialised uniformly over its fan and kept frozen (stabilises training).
    bound = math.sqrt(6.0 / float(3 * patch * patch + width))
    nn.init.uniform_(net.conv_proj.weight, -bound, bound)
    nn.init.zeros_(net.conv_proj.bias)
    net.conv_proj.requires_grad_(False)
    return net, width


def build_backbone(name: str, image_size: int = 224, torchvision_init: bool = False) -> tuple[nn.Module, int]:
    """Return (backbone, feature dim). The backbone maps [B, 3, S, S] to pooled [B, F] features."""
    if name in ("resnet18", "resnet50"):
        return _resnet(name, False, torchvision_init)
    if name in ("cifar_resnet18", "cifar_resnet50"):
        return _resnet(name.removeprefix("cifar_"), True, torchvision_init)
    if name == "mini_resnet":
        return MiniResNet(), 128
    if name == "vit_small":
        return _vit(384, 12, image_size)
    if name == "vit_base":
        return _vit(768, 12, image_size)
    raise ValueError(f"--model must be one of {BACKBONES}, got {name!r}")
