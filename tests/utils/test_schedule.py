"""The learning-rate schedule: linear warm-up, half-cosine, per-group scales and fixed rates."""
import pytest
import torch

from utils.schedule import lr_factor, set_lr


def test_lr_schedule_warmup_cosine_and_groups():
    assert lr_factor(0, 10) == 1.0 and lr_factor(5, 10) == pytest.approx(0.5)
    assert [lr_factor(e, 20, 10) for e in (0, 5, 9)] == pytest.approx([0.1, 0.55, 0.91])
    assert lr_factor(10, 20, 10) == 1.0 and lr_factor(15, 20, 10) == pytest.approx(0.5)
    p = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.SGD([{"params": [p[0]], "lr_scale": 1.0}, {"params": [p[1]], "lr_scale": 0.024},
                           {"params": [p[2]], "lr_scale": 1.0, "fixed_lr": True}], lr=1.0)
    set_lr(opt, 0.1, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.0012, 0.1])


@pytest.mark.parametrize("epochs,warmup", [(50, 10), (12, 4), (30, 0)])
def test_lr_factor_follows_upstreams_schedulers_stepped_once_an_epoch(epochs, warmup):
    """Upstream (C pretrain_cond.py:223-239, 369-385, 579-582): SequentialLR of LinearLR(start_factor=1/W,
    end_factor=1, total_iters=W) and CosineAnnealingLR(E - W), milestone W (plain CosineAnnealingLR(E)
    without warm-up), stepped at the end of every epoch. torch's own schedulers are the reference."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if warmup:
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [
            torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs - warmup)], milestones=[warmup])
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for epoch in range(epochs):
        assert lr_factor(epoch, epochs, warmup) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9), epoch
        opt.step()
        sched.step()


def test_a_run_sets_each_groups_lr_at_the_start_of_each_epoch(tmp_path):
    """Barlow Twins' recipe through the entry point's Run: lr = base_lr x batch / 256 x the epoch's
    factor (LinearLR warm-up over 10 epochs, then cosine), biases and BN at x 0.024."""
    from tests.helpers import tiny_run
    run = tiny_run(tmp_path, "--framework", "barlow_twins", "--max-epochs", "20", "--base-lr", "0.2",
                   "--aug-inj-type", "proj-none")
    peak = 0.2 * 32 / 256
    for epoch, factor in ((0, 0.1), (4, 0.1 + 0.9 * 4 / 10), (10, 1.0), (15, 0.5)):
        run.set_epoch(epoch)
        assert [g["lr"] for g in run.optimizer.param_groups] == pytest.approx([peak * factor, peak * factor * 0.024])
