"""k-NN monitor against scikit-learn (1-NN) and a direct weighted-vote reference."""
import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from utils.evaluation.knn import extract_features, knn_accuracy, neighbours_for_bank


def _feats(seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 16, generator=g) * 2
    ytr, yte = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (80,), generator=g)
    return (centres[ytr] + torch.randn(300, 16, generator=g) * 1.5, ytr,
            centres[yte] + torch.randn(80, 16, generator=g) * 1.5, yte)


def test_nn1_matches_sklearn_cosine():
    ftr, ytr, fte, yte = _feats()
    ref = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(ftr.numpy(), ytr.numpy())
    expected = float((ref.predict(fte.numpy()) == yte.numpy()).mean())
    assert knn_accuracy(ftr, ytr, fte, yte, k=20, chunk=7)["nn1"] == expected


def test_weighted_knn_matches_direct_votes():
    ftr, ytr, fte, yte = _feats(1)
    k, t = 7, 0.1  # the rule's k for this bank: 300 images // (10 x 4 classes)
    a = ftr / ftr.norm(dim=1, keepdim=True)
    b = fte / fte.norm(dim=1, keepdim=True)
    correct = 0
    for i in range(len(b)):
        sims = (a @ b[i]).numpy()
        top = np.argsort(-sims)[:k]
        votes = np.zeros(4)
        for j in top:
            votes[int(ytr[j])] += np.exp(sims[j] / t)
        correct += int(votes.argmax() == int(yte[i]))
    for most in (k, 200):  # --knn-k is the most: the bank's rule gives 7 either way
        res = knn_accuracy(ftr, ytr, fte, yte, k=most, temperature=t)
        assert res["knn"] == correct / len(b) and res["k"] == k


@pytest.mark.parametrize("k_max,bank,classes,expected", [
    (200, 1438, 10, 14),      # colordigits: a tenth of its ~144 images a class
    (200, 50000, 10, 200),    # CIFAR-10: the cap, InstDisc's 200
    (200, 126689, 100, 126),  # ImageNet-100
    (20, 5000, 10, 20),       # a smaller --knn-k is kept
    (200, 64, 10, 1)])        # a bank smaller than ten images a class: one neighbour
def test_the_rule_for_k(k_max, bank, classes, expected):
    assert neighbours_for_bank(k_max, bank, classes) == expected


def test_chance_is_the_most_frequent_query_class():
    ftr, ytr, fte, _ = _feats(2)
    yte = torch.tensor([0] * 50 + [1] * 20 + [3] * 10)
    assert knn_accuracy(ftr, ytr, fte, yte)["chance"] == 50 / 80


def test_extract_features_from_uint8_tensors_normalises_and_restores_mode():
    class Data:
        images = torch.full((5, 3, 2, 2), 255, dtype=torch.uint8)
        labels = torch.arange(5)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(12)).train()
    f, y = extract_features(net, Data(), torch.device("cpu"), batch_size=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert f.shape == (5, 12) and torch.equal(y, torch.arange(5))
    torch.testing.assert_close(f, torch.full((5, 12), 2.0), atol=1e-4, rtol=0)  # (1 - 0.5) / 0.25, eval BN
    assert net.training


def test_extract_features_gives_one_row_per_crop_of_a_multi_crop_dataset():
    """Ten-crop style items ([crops, 3, H, W]): each crop is its own row, in crop order, its label repeated."""
    g = torch.Generator().manual_seed(0)
    items = [(torch.rand(3, 3, 4, 4, generator=g), label) for label in (7, 2, 5, 1, 4)]
    data = torch.utils.data.TensorDataset(torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items]))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 6))
    f, y = extract_features(net, data, torch.device("cpu"), batch_size=2)
    assert f.shape == (15, 6)
    assert y.tolist() == [7] * 3 + [2] * 3 + [5] * 3 + [1] * 3 + [4] * 3
    with torch.no_grad():
        expected = torch.cat([net(x) for x, _ in items])  # image by image, its crops as a batch
    torch.testing.assert_close(f, expected)


def _weighted_vote_accuracy(ftr, ytr, fte, yte, k: int, t: float) -> float:
    """Cosine similarities, the k most similar training images, votes exp(sim / T) per class, argmax."""
    a = ftr / ftr.norm(dim=1, keepdim=True)
    b = fte / fte.norm(dim=1, keepdim=True)
    correct = 0
    for i in range(len(b)):
        sims = (a @ b[i]).double().numpy()
        votes = np.zeros(int(ytr.max()) + 1)
        for j in np.argsort(-sims)[:k]:
            votes[int(ytr[j])] += np.exp(sims[j] / t)
        correct += int(votes.argmax() == int(yte[i]))
    return correct / len(b)


def test_weighted_knn_follows_the_temperature():
    """At two temperatures that change the predictions, the monitor equals the vote written out (with
    the k it reports using): a monitor that dropped or misplaced T would agree with at most one."""
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(4, 16, generator=g) * 0.6  # overlapping classes: neighbours of mixed labels
    ytr, yte = torch.randint(0, 4, (800,), generator=g), torch.randint(0, 4, (120,), generator=g)
    ftr = centres[ytr] + torch.randn(800, 16, generator=g)
    fte = centres[yte] + torch.randn(120, 16, generator=g)
    accs = {t: knn_accuracy(ftr, ytr, fte, yte, k=40, temperature=t, chunk=9) for t in (0.02, 2.0)}
    k = accs[0.02]["k"]
    assert k > 5
    sharp, flat = (_weighted_vote_accuracy(ftr, ytr, fte, yte, k, t) for t in (0.02, 2.0))
    assert sharp != flat
    assert (accs[0.02]["knn"], accs[2.0]["knn"]) == (sharp, flat)
