"""The LooC probe's pieces against independent references: torch's MultiStepLR, a hand-written SGD
step, torchvision's functional resize and crop."""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from utils.evaluation.looc_probe import (
    ProbeSettings,
    build_probe,
    looc_transforms,
    lr_at,
    new_head,
    run_probe,
    train_epoch,
)


def settings(**kw):
    return ProbeSettings(**{"dataset": "cub200", "model": "mini_resnet", "pretrain_data": "colordigits", **kw})


@pytest.mark.parametrize("epochs,milestones", [(200, [120, 160]), (10, [3, 7]), (5, [])])
def test_lr_schedule_is_torch_multisteplr(epochs, milestones):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=30.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)
    want = []
    for _ in range(epochs):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [lr_at(e, 30.0, milestones) for e in range(epochs)] == pytest.approx(want, rel=1e-12)


def test_the_head_is_mocos_initialisation():
    torch.manual_seed(0)
    head = new_head(2048, 200)
    assert head.bias.abs().max() == 0 and abs(head.weight.std().item() - 0.01) < 2e-4
    assert abs(head.weight.mean().item()) < 1e-4


def test_one_epoch_is_sgd_with_momentum_at_the_epochs_lr():
    """Features = the inputs (a flattening backbone); one full batch per epoch, so the update is the
    closed form: v = m v + g + wd w; w -= lr v, with the lr the milestones give."""
    torch.manual_seed(1)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    s = settings(epochs=3, lr=0.5, momentum=0.9, weight_decay=0.01, milestones=[1], batch_size=6)
    probe = build_probe(nn.Identity(), 4, 3, s, torch.device("cpu"))
    w, b = probe.head.weight.detach().clone(), probe.head.bias.detach().clone()
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    for epoch in range(2):
        wr, br = w.clone().requires_grad_(), b.clone().requires_grad_()
        nn.functional.cross_entropy(x @ wr.T + br, y).backward()
        vw, vb = 0.9 * vw + wr.grad + 0.01 * w, 0.9 * vb + br.grad + 0.01 * b
        lr = 0.5 if epoch == 0 else 0.05
        w, b = w - lr * vw, b - lr * vb
        train_epoch(probe, TensorDataset(x, y), epoch, num_workers=0)
        assert torch.allclose(probe.head.weight, w, atol=1e-6) and torch.allclose(probe.head.bias, b, atol=1e-6)
        assert probe.optimizer.param_groups[0]["lr"] == lr


def test_the_best_epoch_is_reported_first_of_equals(monkeypatch):
    import utils.evaluation.looc_probe
    scores = iter([0.2, 0.5, 0.3, 0.5])
    monkeypatch.setattr(utils.evaluation.looc_probe, "test_top1", lambda *a, **k: next(scores))
    data = TensorDataset(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    probe = build_probe(nn.Identity(), 3, 2, settings(epochs=4, milestones=[2], batch_size=2), torch.device("cpu"))
    saved, lines = [], []
    run_probe(probe, data, data, 0, save=lambda: saved.append(len(probe.history)), log=lines.append)
    assert probe.best() == (0.5, 2) and [r["test"] for r in probe.history] == [0.2, 0.5, 0.3, 0.5]
    assert saved == [1, 2, 3, 4] and lines[-1].endswith("test top1=0.5000 (best 0.5000, epoch 2)")
    assert [r["lr"] for r in probe.history] == pytest.approx([30.0, 30.0, 3.0, 3.0])


def test_the_backbone_stays_frozen_batch_norm_included():
    from models import build_backbone
    torch.manual_seed(0)
    net = build_backbone("mini_resnet", 32)[0]
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe = build_probe(net, 128, 2, settings(epochs=1, milestones=[], batch_size=4), torch.device("cpu"))
    train_epoch(probe, TensorDataset(torch.randn(8, 3, 16, 16), torch.tensor([0, 1] * 4)), 0, 0)
    after = probe.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats and num_batches_tracked too
    assert not probe.backbone.training and not any(p.requires_grad for p in probe.backbone.parameters())


def test_transforms_are_upstreams_at_224_and_keep_the_ratio_elsewhere():
    from PIL import Image
    from torchvision.transforms import functional as TF
    img = Image.effect_noise((300, 260), 40).convert("RGB")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    train, test = looc_transforms(224, mean, std)
    ref = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(img, 256), 224)), mean, std)
    assert torch.equal(test(img), ref)
    assert train(img).shape == (3, 224, 224)
    small = looc_transforms(32, mean, std)[1]
    assert torch.equal(small(img), TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(img, 37), 32)), mean, std))
