"""Feature extraction and the k-NN monitors (1-NN cosine as upstream; weighted k-NN as solo-learn)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def extract_features(backbone: nn.Module, data, device: torch.device, batch_size: int = 256,
                     mean: tuple | None = None, std: tuple | None = None, num_workers: int = 0,
                     channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Backbone features (eval mode, fp32) of every image in ``data``.

    ``data`` is either a Dataset of (transformed tensor, label), or an object holding uint8
    ``images`` / ``labels`` tensors (normalised here with mean/std, no resize).
    """
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    if not isinstance(data, Dataset):
        m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        s = torch.tensor(std, device=device).view(1, 3, 1, 1)
        batches = ((data.images[i:i + batch_size], data.labels[i:i + batch_size])
                   for i in range(0, len(data.images), batch_size))
        prep = lambda x: (x.to(device).float() / 255 - m) / s  # noqa: E731
    else:
        batches = DataLoader(data, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
        prep = lambda x: x.to(device, non_blocking=True)  # noqa: E731
    for x, y in batches:
        x, y = prep(x), torch.as_tensor(y)
        if x.dim() == 5:  # multi-crop (TenCrop): one feature row per crop, label repeated
            y = y.repeat_interleave(x.shape[1])
            x = x.flatten(0, 1)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats.append(backbone(x).float())
        labels.append(y.to(device))
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def neighbours_for_bank(k_max: int, bank_size: int, n_classes: int) -> int:
    """The k of the weighted k-NN vote: ``min(k_max, bank_size // (10 * n_classes))``, at least 1.

    Why: the weighted vote (Wu et al., 2018) took k = 200 on ImageNet's 1.28 M images, about 1/6 of a
    class, so the top-k of a query is drawn from its own class when the features separate classes. A
    fixed 200 on a small bank (colordigits: 1,438 images, ~144 a class) reaches past any one class
    and votes with the whole bank, near chance for any feature. A tenth of the mean class size keeps
    k well inside one class; the cap keeps the published 200 on CIFAR (5,000 a class) and similar
    banks (ImageNet-100's 1,300 a class gives 126)."""
    return max(1, min(k_max, bank_size // (10 * n_classes)))


@torch.no_grad()
def knn_accuracy(train_f: Tensor, train_y: Tensor, test_f: Tensor, test_y: Tensor, k: int = 200,
                 temperature: float = 0.1, chunk: int = 1024) -> dict[str, float]:
    """Cosine 1-NN accuracy, temperature-weighted k-NN accuracy (votes exp(sim / T)), the k used
    (``neighbours_for_bank(k, ...)``: ``k`` is the most) and the chance level (the most frequent
    query class's share, what always answering that class would score)."""
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    n_cls = int(max(train_y.max(), test_y.max())) + 1
    k = neighbours_for_bank(k, train_f.shape[0], n_cls)
    nn1 = knn = 0
    for i in range(0, test_f.shape[0], chunk):
        sim = test_f[i:i + chunk] @ train_f.t()
        top_sim, top_idx = sim.topk(k, dim=1)
        y = test_y[i:i + chunk]
        nn1 += (train_y[top_idx[:, 0]] == y).sum().item()
        votes = torch.zeros(sim.shape[0], n_cls, device=sim.device)
        votes.scatter_add_(1, train_y[top_idx], torch.exp(top_sim / temperature))
        knn += (votes.argmax(1) == y).sum().item()
    n = test_f.shape[0]
    chance = test_y.bincount().max().item() / n
    return {"nn1": nn1 / n, "knn": knn / n, "k": k, "chance": chance}
