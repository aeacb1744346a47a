"""scripts/convert_to_detectron2.py against detectron2's documented R50 naming, written out here,
a round trip back into torchvision's ResNet-50, and its one-line errors; detection/'s configs."""
import ast
import os
import pickle

import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from tests.helpers import ROOT, expect_one_line_error, load_script

BLOCKS = {"res2": 3, "res3": 4, "res4": 6, "res5": 3}  # ResNet-50's bottlenecks per stage
WIDTH = {"res2": 64, "res3": 128, "res4": 256, "res5": 512}  # each stage's bottleneck width (x4 out)
NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def detectron2_r50_shapes() -> dict[str, tuple]:
    """detectron2's ResNet-50 (build_resnet_backbone) parameter and buffer names with their shapes:
    stem.conv1 (+ .norm), res<N>.<block>.conv{1,2,3} (+ .norm), res<N>.0.shortcut (+ .norm)."""
    def norm(prefix, c):
        return {f"{prefix}.norm.{f}": ((c,) if f != "num_batches_tracked" else ()) for f in NORM}
    out = {"stem.conv1.weight": (64, 3, 7, 7), **norm("stem.conv1", 64)}
    cin = 64
    for stage, n in BLOCKS.items():
        w = WIDTH[stage]
        for b in range(n):
            p = f"{stage}.{b}"
            out |= {f"{p}.conv1.weight": (w, cin, 1, 1), f"{p}.conv2.weight": (w, w, 3, 3),
                    f"{p}.conv3.weight": (4 * w, w, 1, 1), **norm(f"{p}.conv1", w), **norm(f"{p}.conv2", w),
                    **norm(f"{p}.conv3", 4 * w)}
            if b == 0:
                out |= {f"{p}.shortcut.weight": (4 * w, cin, 1, 1), **norm(f"{p}.shortcut", 4 * w)}
            cin = 4 * w
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A torchvision ResNet-50 with random weights and batch-norm statistics, saved as a checkpoint's
    backbone (under DDP's 'module.' prefix) and converted: (the net, the pickle's contents, tmp dir)."""
    torch.manual_seed(0)
    net = resnet50(weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.normal_(), m.running_mean.normal_(), m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    tmp = tmp_path_factory.mktemp("d2")
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    torch.save({"backbone": state, "epoch": 3}, tmp / "ckpt-last.pth")
    load_script("convert_to_detectron2").main([str(tmp / "ckpt-last.pth"), str(tmp / "out.pkl")])
    with open(tmp / "out.pkl", "rb") as f:
        return net, pickle.load(f), tmp


def test_the_pickle_has_detectron2s_layout_names_and_shapes(converted):
    net, obj, _ = converted
    assert set(obj) == {"model", "__author__", "matching_heuristics"} and obj["matching_heuristics"] is True
    assert isinstance(obj["__author__"], str)
    want = detectron2_r50_shapes()
    assert len(want) == 318 and set(obj["model"]) == set(want)
    for name, shape in want.items():
        assert isinstance(obj["model"][name], np.ndarray) and obj["model"][name].shape == shape, name
    tv = net.state_dict()
    assert np.array_equal(obj["model"]["stem.conv1.norm.running_var"], tv["bn1.running_var"].numpy())
    assert np.array_equal(obj["model"]["res3.0.shortcut.weight"], tv["layer2.0.downsample.0.weight"].numpy())
    assert np.array_equal(obj["model"]["res5.2.conv3.norm.bias"], tv["layer4.2.bn3.bias"].numpy())


def test_a_converted_resnet50_round_trips_into_torchvision(converted):
    net, obj, _ = converted
    back = load_script("convert_to_detectron2").from_detectron2(obj["model"])
    with torch.device("meta"):
        fresh = resnet50(weights=None)
    fresh = fresh.to_empty(device="cpu")  # uninitialised: every value compared below comes from the pickle
    missing, unexpected = fresh.load_state_dict(back, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    want = net.state_dict()
    assert all(torch.equal(fresh.state_dict()[k], want[k]) for k in back)


def test_bad_checkpoints_get_one_line_errors(converted, tmp_path, capsys):
    from models import build_backbone
    main = load_script("convert_to_detectron2").main
    out = str(tmp_path / "o.pkl")
    expect_one_line_error(main, [tmp_path / "none.pth", out], capsys, r"CKPT .*none.pth: no such file$")
    torch.save({"model": {}}, tmp_path / "nobb.pth")
    expect_one_line_error(main, [tmp_path / "nobb.pth", out], capsys, r"CKPT .*nobb.pth: has no 'backbone' key")
    torch.save({"backbone": build_backbone("resnet18")[0].state_dict()}, tmp_path / "r18.pth")
    expect_one_line_error(main, [tmp_path / "r18.pth", out], capsys,
                          r"CKPT .*r18.pth: backbone is not a torchvision-style ResNet-50, which detectron2's "
                          r"R50-C4 takes \(\d+ missing, 0 unexpected, \d+ mis-shaped keys")
    cifar_stem = torch.load(converted[2] / "ckpt-last.pth", weights_only=True)
    cifar_stem["backbone"]["module.conv1.weight"] = torch.zeros(64, 3, 3, 3)  # cifar_resnet50's 3x3 stem
    torch.save(cifar_stem, tmp_path / "c50.pth")
    expect_one_line_error(main, [tmp_path / "c50.pth", out], capsys,
                          r"\(0 missing, 0 unexpected, 1 mis-shaped keys, e.g. conv1.weight\)$")
    expect_one_line_error(main, [converted[2] / "ckpt-last.pth", tmp_path / "no" / "o.pkl"], capsys,
                          r"OUT .*no/o.pkl: its folder does not exist or is not writable$")
    assert not os.path.exists(out)


def _config(name: str) -> dict:
    """A config with its _BASE_ chain merged (later files win, as detectron2 merges them)."""
    yaml = pytest.importorskip("yaml")
    with open(os.path.join(ROOT, "detection", "configs", name)) as f:
        cfg = yaml.safe_load(f)
    base = cfg.pop("_BASE_", None)
    if base is None:
        return cfg

    def merge(a, b):
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and k in a else v for k, v in b.items()}}
    return merge(_config(base), cfg)


def test_detection_configs_are_the_recipe():
    voc, coco = _config("voc_R50_C4_24k.yaml"), _config("coco_R50_C4_2x.yaml")
    for cfg in (voc, coco):
        m = cfg["MODEL"]
        assert (m["RESNETS"]["DEPTH"], m["RESNETS"]["NORM"], m["RESNETS"]["STRIDE_IN_1X1"]) == (50, "SyncBN", False)
        assert m["BACKBONE"]["FREEZE_AT"] == 0 and m["RESNETS"]["OUT_FEATURES"] == ["res4"]  # C4
        assert cfg["INPUT"]["FORMAT"] == "RGB" and m["PIXEL_MEAN"] == [123.675, 116.28, 103.53]
        assert m["PIXEL_STD"] == [58.395, 57.12, 57.375]  # ImageNet's mean and std x 255: torchvision's input
        assert (cfg["SOLVER"]["IMS_PER_BATCH"], cfg["SOLVER"]["BASE_LR"]) == (16, 0.02)
    assert (voc["SOLVER"]["MAX_ITER"], ast.literal_eval(voc["SOLVER"]["STEPS"])) == (24000, (18000, 22000))
    assert ast.literal_eval(voc["DATASETS"]["TRAIN"]) == ("voc_2007_trainval", "voc_2012_trainval")
    assert voc["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == 20 and voc["MODEL"]["MASK_ON"] is False
    assert (coco["SOLVER"]["MAX_ITER"], ast.literal_eval(coco["SOLVER"]["STEPS"])) == (180000, (120000, 160000))
    assert ast.literal_eval(coco["DATASETS"]["TEST"]) == ("coco_2017_val",)
    with open(os.path.join(ROOT, "detection", "train_net.py")) as f:
        tree = ast.parse(f.read())
    registered = [c.name for c in tree.body if isinstance(c, ast.ClassDef) and c.decorator_list]
    assert voc["MODEL"]["ROI_HEADS"]["NAME"] == "Res5ROIHeadsExtraNorm" and registered == ["Res5ROIHeadsExtraNorm"]
