"""The published recipe, pinned: every constant a paper number depends on, read from what the entry
point's own builders make (framework, optimiser, augmentation) at the default flags, against the values
of upstream's code (gmum/CASSLE pretrain_cond.py / trainers_cond.py, hankook/AugSelf pretrain.py /
trainers.py) and the papers. The models are built on the meta device: shapes without weights."""
import itertools

import pytest
import torch
from torch import nn

import pretrain_cond
from models import FRAMEWORKS
from utils.training.run import aug_config, build_model, build_optimizer

CASSLE = ["--aug-treatment", "mlp", "--aug-nn-depth", "6", "--aug-nn-width", "64", "--aug-inj-type", "proj-cat",
          "--aug-cond", "crop", "color", "color_diff", "blur", "grayscale"]


def _args(*extra):
    return pretrain_cond.build_parser().parse_args(["--logdir", "unused", *extra])


def _built(framework, model="resnet50", dataset="imagenet100", *extra):
    args = _args("--framework", framework, "--model", model, "--dataset", dataset, "--aug-inj-type", "proj-none",
                 *extra)
    with torch.device("meta"):
        fw = build_model(args, 224)
    return fw, build_optimizer(fw, args), args


def _layers(seq: nn.Module) -> list:
    """Each Linear as (out, in, bias) and each BatchNorm as ('bn', width, affine), in order."""
    out = []
    for m in seq.modules():
        if isinstance(m, nn.Linear):
            out.append((m.out_features, m.in_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            out.append(("bn", m.num_features, m.affine))
    return out


def _mlp(*dims, last_bn=None):
    """Upstream's load_mlp: hidden Linear (no bias) + BN per layer but the last; last Linear with bias
    unless followed by BN ('affine' / 'plain')."""
    layers = []
    for i, o in itertools.pairwise(dims[:-1]):
        layers += [(o, i, False), ("bn", o, True)]
    layers.append((dims[-1], dims[-2], last_bn is None))
    if last_bn:
        layers.append(("bn", dims[-1], last_bn == "affine"))
    return layers


# framework -> (projector layers for F features, predictor layers or None); C pretrain_cond.py, A pretrain.py
SHAPES = {
    "moco": (lambda f: _mlp(f, f, 128), None),
    "simclr": (lambda f: _mlp(f, f, 128), None),
    "byol": (lambda f: _mlp(f, f, 256), _mlp(256, 4096, 256)),
    "simsiam": (lambda f: _mlp(f, 2048, 2048, last_bn="affine"), _mlp(2048, 512, 2048)),  # 3 layers on ImageNet
    "mocov3": (lambda f: _mlp(f, 4096, 4096, 256, last_bn="plain"), _mlp(256, 4096, 256, last_bn="plain")),
    "barlow_twins": (lambda f: _mlp(f, 8192, 8192, 8192, last_bn="plain"), None),
    "swav": (lambda f: _mlp(f, 2048, 128), None),
}
# framework -> (optimiser, warm-up epochs, loss / target constants read from the built module)
RECIPE = {
    "moco": ("SGD", 0, {"queue": 65536, "temperature": 0.2, "momentum": 0.999, "enqueue": "queries"}),
    "simclr": ("SGD", 0, {"temperature": 0.2, "global_negatives": False}),
    "byol": ("SGD", 0, {"momentum": 0.996}),
    "simsiam": ("SGD", 0, {}),
    "mocov3": ("AdamW", 40, {"temperature": 0.2, "momentum": 0.999, "momentum_schedule": "constant"}),
    "barlow_twins": ("SGD", 10, {"lambd": 0.0051}),
    "swav": ("SGD", 0, {"prototypes": 100, "temperature": 0.1, "eps": 0.05, "iters": 3, "freeze_iters": 410}),
}


@pytest.mark.parametrize("model,feat", [("resnet18", 512), ("resnet50", 2048)])
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_projector_and_predictor_shapes(framework, model, feat):
    fw, _, _ = _built(framework, model, "stl10")
    proj, pred = SHAPES[framework]
    assert _layers(fw.projector.net) == proj(feat), framework
    assert _layers(fw.predictor) == pred if pred else not hasattr(fw, "predictor")
    if framework == "simsiam":  # one more 2048 layer on ImageNet-scale data (C: 2 + imagenet)
        fw, _, _ = _built(framework, model, "imagenet100")
        assert _layers(fw.projector.net) == _mlp(feat, 2048, 2048, 2048, last_bn="affine")


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_optimiser_schedule_and_loss_constants(framework):
    fw, opt, _ = _built(framework, "resnet18", "stl10", "--batch-size", "512", "--base-lr", "0.05")
    kind, warmup, consts = RECIPE[framework]
    assert type(opt).__name__ == kind and fw.warmup_epochs == warmup
    for k, v in consts.items():
        assert getattr(fw.opts, k) == v, k
    trainable = [p for p in fw.parameters() if p.requires_grad]
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert len(in_opt) == len(trainable) and {id(p) for p in in_opt} == {id(p) for p in trainable}
    targets = [n for n, p in fw.named_parameters() if n.startswith("target_")]
    assert all(not p.requires_grad for n, p in fw.named_parameters() if n.startswith("target_"))
    assert bool(targets) == (framework in ("moco", "mocov3", "byol"))
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.05 * 512 / 256) and g["weight_decay"] == 5e-4  # the linear scaling rule
        if kind == "SGD":
            assert g["momentum"] == 0.9 and not g["nesterov"] and g["dampening"] == 0
        else:
            assert g["betas"] == (0.9, 0.999)
    scales = [(g.get("lr_scale", 1.0), bool(g.get("fixed_lr")), len(g["params"])) for g in opt.param_groups]
    if framework == "barlow_twins":  # weights at lr, biases and BN parameters at lr x 0.024 (C barlow_twins)
        ones = [p for p in trainable if p.ndim == 1]
        assert scales == [(1.0, False, len(trainable) - len(ones)), (0.024, False, len(ones))]
    elif framework == "simsiam":  # the predictor's own optimiser has no scheduler upstream
        assert scales == [(1.0, False, len(trainable) - 5), (1.0, True, 5)]
        assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in fw.predictor.parameters()}
    else:
        assert scales == [(1.0, False, len(trainable))]
    if framework == "moco":
        assert fw.queue.shape == (65536, 128)
    if framework == "swav":
        assert _layers(fw.prototypes) == [(100, 128, False)]


def test_default_flags_are_upstreams():
    """C/A pretrain: batch 256, base lr 0.03 (lr = base x batch / 256), wd 5e-4, SGD momentum 0.9,
    200 epochs; conditioning raw, width 32, depth 2, proj-cat."""
    a = _args()
    assert (a.batch_size, a.base_lr, a.wd, a.momentum, a.max_epochs) == (256, 0.03, 5e-4, 0.9, 200)
    assert (a.aug_treatment, a.aug_nn_width, a.aug_nn_depth, a.aug_inj_type) == ("raw", 32, 2, "proj-cat")


def test_cassle_conditioning_and_augself_heads():
    """The paper's CASSLE MoCo: the 13-d descriptor through a 6-layer, 64-wide MLP ending in BN
    (upstream's load_mlp default), concatenated to the 2048 features; AugSelf heads 2F-512-512-out."""
    fw, _, _ = _built("moco", "resnet50", "imagenet100", *CASSLE, "--ss-crop", "0.5", "--ss-color", "0.5")
    assert _layers(fw.projector.embed) == _mlp(13, 64, 64, 64, 64, 64, 64, last_bn="affine")
    assert _layers(fw.projector.net) == _mlp(2048 + 64, 2048, 128)
    assert _layers(fw.target_projector.embed) == _layers(fw.projector.embed)  # keys conditioned alike
    for key, out in (("crop", 4), ("color", 4)):
        assert _layers(fw.augself.heads[key]) == _mlp(4096, 512, 512, out)
    assert fw.augself.weights == {"crop": 0.5, "color": 0.5}


@pytest.mark.parametrize("dataset,size,kernel", [("imagenet100", 224, 23), ("stl10", 96, 9), ("cifar10", 32, None)])
def test_augmentation_recipe(dataset, size, kernel):
    """C datasets.py: RandomResizedCrop(size, scale (0.2, 1)), flip 0.5, ColorJitter(0.4, 0.4, 0.4, 0.1,
    p 0.8), grayscale 0.2, GaussianBlur(23 or 9, sigma (0.1, 2), p 0.5; none at 32 px)."""
    cfg = aug_config(_args("--dataset", dataset))
    assert (cfg.size, cfg.blur_kernel, cfg.crop_scale, cfg.p_flip) == (size, kernel, (0.2, 1.0), 0.5)
    assert (cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, cfg.p_jitter) == (0.4, 0.4, 0.4, 0.1, 0.8)
    assert (cfg.p_gray, cfg.sigma, cfg.p_blur) == (0.2, (0.1, 2.0), 0.5)
    assert cfg.jitter_ranges == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))
