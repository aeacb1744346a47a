"""analyze.py invariance's published losses and neighbors --dump-latents, on the colordigits checkpoint."""
import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from tests.helpers import load_script

analyze = load_script("analyze")


def out_dir(ckpt):
    return os.path.join(os.path.dirname(ckpt), "analysis-ckpt-last")


def test_invariance_losses_beside_the_cosines(colordigits_ckpt):
    analyze.main(["invariance", "--ckpt", colordigits_ckpt, "--num-images", "96", "--device", "cpu",
                  "--batch-size", "32"])
    cos = json.loads(Path(out_dir(colordigits_ckpt), "invariance.json").read_text())
    losses = json.loads(Path(out_dir(colordigits_ckpt), "invariance-losses.json").read_text())
    assert set(losses) == set(cos) and set(losses["crop"]) == set(cos["crop"])
    for kind in cos:
        for layer, c in cos[kind].items():
            # three equal batches: their mean of minus the mean cosine is minus the cosine over all images
            assert losses[kind][layer]["self_distill"]["mean"] == pytest.approx(-c, abs=1e-5), (kind, layer)
            assert losses[kind][layer]["infonce"]["mean"] > 0 and losses[kind][layer]["cca"]["mean"] >= 0
    assert all(v["self_distill"]["std"] < 1e-6 for v in losses["identity"].values())
    with open(os.path.join(out_dir(colordigits_ckpt), "invariance.csv")) as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"augmentation", "layer", "cosine", "infonce", "self_distill", "cca"}


def test_neighbors_dump_latents(colordigits_ckpt):
    analyze.main(["neighbors", "--ckpt", colordigits_ckpt, "--num-images", "96", "--device", "cpu", "--k", "4",
                  "--dump-latents"])
    with open(os.path.join(out_dir(colordigits_ckpt), "latents-test-colordigits.pkl"), "rb") as f:
        latents = pickle.load(f)
    assert isinstance(latents, np.ndarray) and latents.dtype == np.float32 and latents.shape[0] == 96
    nb = json.loads(Path(out_dir(colordigits_ckpt), "neighbors.json").read_text())
    found = NearestNeighbors(n_neighbors=5, metric="cosine").fit(latents).kneighbors(latents[nb["queries"]])[1]
    assert [list(r[1:]) for r in found] == nb["neighbors"]  # the first neighbour is the query itself
