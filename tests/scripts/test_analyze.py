"""Every analysis subcommand on a checkpoint pretrained for an epoch on colordigits."""
import json
import os

import pytest

from tests.helpers import load_script

analyze = load_script("analyze")


def out_dir(ckpt):
    return os.path.join(os.path.dirname(ckpt), "analysis-ckpt-last")


def run(cmd, ckpt, *extra):
    analyze.main([cmd, "--ckpt", ckpt, "--num-images", "96", "--device", "cpu", *extra])


def test_invariance_identity_is_one_and_projector_uses_descriptor(colordigits_ckpt):
    run("invariance", colordigits_ckpt)
    res = json.load(open(os.path.join(out_dir(colordigits_ckpt), "invariance.json")))
    assert set(res) == {"identity", "crop", "color", "blur", "grayscale", "flip"}
    for layer, v in res["identity"].items():
        assert v == pytest.approx(1.0, abs=1e-5), layer
    assert set(res["crop"]) >= {"layer1", "layer4", "pool", "projector", "projector_mismatched"}
    assert res["color"]["pool"] < 1.0
    # a CASSLE projector reads the descriptor: the mismatched one changes its output
    assert res["color"]["projector"] != res["color"]["projector_mismatched"]
    assert os.path.exists(os.path.join(out_dir(colordigits_ckpt), "invariance.csv"))


def test_predict_aug_interpolation_pca_neighbors_write_files(colordigits_ckpt):
    for cmd in ("predict-aug", "interpolation", "pca", "neighbors"):
        run(cmd, colordigits_ckpt)
    d = out_dir(colordigits_ckpt)
    pred = json.load(open(os.path.join(d, "predict-aug.json")))
    assert pred["blur"]["r2"] is None  # no blur on 32 px data
    assert all(-1.0 < pred[k]["r2"] <= 1.0 for k in ("crop", "color", "color_diff", "flip", "grayscale"))
    interp = json.load(open(os.path.join(d, "interpolation.json")))
    assert interp["curves"]["color"]["pool"][0] == pytest.approx(1.0, abs=1e-5)  # strength 0 = identity
    assert len(interp["curves"]["blur"]["layer4"]) == 11
    assert json.load(open(os.path.join(d, "pca.json")))["alpha"] > 0
    nb = json.load(open(os.path.join(d, "neighbors.json")))
    assert len(nb["neighbors"]) == 6 and all(len(n) == 8 for n in nb["neighbors"])
    for png in ("interpolation.png", "pca.png", "neighbors.png"):
        assert os.path.getsize(os.path.join(d, png)) > 1000
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(d))


@pytest.mark.parametrize("argv,pattern", [
    (["spectrum", "--ckpt", "x.pth"], "unknown command 'spectrum'"),
    (["pca", "--ckpt", "/no/such.pth"], "--ckpt /no/such.pth: no such file"),
    (["neighbors", "--ckpt", "x.pth", "--k", "0"], "--k must be positive, got 0"),
    (["pca", "--ckpt", "x.pth", "--num-images", "-1"], "--num-images must be positive, got -1"),
])
def test_bad_input_one_line(capsys, argv, pattern):
    with pytest.raises(SystemExit):
        analyze.main(argv)
    err = capsys.readouterr().err.strip()
    assert pattern in err and "\n" not in err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as e:
        analyze.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in analyze.COMMANDS) and "--ckpt" in out


def test_unknown_dataset_one_line(colordigits_ckpt, capsys):
    with pytest.raises(SystemExit):
        analyze.main(["pca", "--ckpt", colordigits_ckpt, "--dataset", "mnist", "--device", "cpu"])
    assert "--dataset must be one of" in capsys.readouterr().err


def test_a_folder_is_analysed_on_its_held_out_queries(colordigits_ckpt, tmp_path):
    from datasets.pretrain import build_pretrain_data
    from tests.data_formats import write_class_folders
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b", "c"], per_class=11, size=(40, 36))
    queries = build_pretrain_data("folder", root).knn_test  # images 0 and 10 of each class
    images, labels = analyze._first_images(queries, 5, 32)
    assert images.shape == (5, 3, 32, 32) and images.dtype.is_floating_point is False
    assert labels.tolist() == [0, 0, 1, 1, 2]
    run("pca", colordigits_ckpt, "--dataset", "folder", "--datadir", root)
    assert json.load(open(os.path.join(out_dir(colordigits_ckpt), "pca.json")))["alpha"] > 0
