"""The learning-rate schedule: linear warm-up, half-cosine, per-group scales and fixed rates."""
import pytest
import torch

from utils.schedule import lr_factor, set_lr


def test_lr_schedule_warmup_cosine_and_groups():
    assert lr_factor(0, 10) == 1.0 and lr_factor(5, 10) == pytest.approx(0.5)
    assert [lr_factor(e, 20, 10) for e in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_factor(10, 20, 10) == 1.0 and lr_factor(15, 20, 10) == pytest.approx(0.5)
    p = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.SGD([{"params": [p[0]], "lr_scale": 1.0}, {"params": [p[1]], "lr_scale": 0.024},
                           {"params": [p[2]], "lr_scale": 1.0, "fixed_lr": True}], lr=1.0)
    set_lr(opt, 0.1, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.0012, 0.1])
