"""Every framework x injection type steps; EMA, queue wrap-around, SwAV prototype freezing."""
import copy
import math

import pytest
import torch

from models import (
    FRAMEWORKS,
    ConditionSpec,
    FrameworkOptions,
    Progress,
    build_framework,
    option,
)
from models.frameworks.base import cosine_momentum, ema_update

SMALL_OWN = {"moco": {"queue": 24}, "swav": {"prototypes": 10}}  # a short queue, fewer prototypes


def small(name: str) -> FrameworkOptions:
    """``name``'s options with a narrow projector (and a short queue, fewer prototypes)."""
    return FRAMEWORKS[name].Options(proj_hidden=32, **SMALL_OWN.get(name, {}))

D = 5
CONDS = {
    "proj-none": ConditionSpec(0, "raw", "proj-none"),
    "proj-cat": ConditionSpec(D, "mlp", "proj-cat", width=8, depth=2),
    "proj-add": ConditionSpec(D, "mlp", "proj-add", width=8, depth=2),
    "proj-mul": ConditionSpec(D, "mlp", "proj-mul", width=8, depth=2),
    "hn": ConditionSpec(D, "hn", "proj-cat", width=8, depth=2),
}


def _batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 3, 16, 16, generator=g), torch.randn(b, 3, 16, 16, generator=g),
            torch.randn(b, D, generator=g), torch.randn(b, D, generator=g))


def _targets(b=6):
    t = {"crop": torch.rand(b, 4), "color": torch.rand(b, 4), "flip": torch.ones(b, 1), "rot": torch.zeros(b).long()}
    return t, t


@pytest.mark.parametrize("inj", list(CONDS))
@pytest.mark.parametrize("name", sorted(FRAMEWORKS))
def test_every_framework_and_injection_steps(name, inj):
    torch.manual_seed(0)
    model = build_framework(name, "cifar_resnet18", CONDS[inj], small(name),
                            augself_weights={"crop": 0.5, "color": 0.5, "flip": 0.1, "rot": 0.1}, image_size=16)
    model.train()
    out = model(*_batch(), targets=_targets())
    assert torch.isfinite(out["loss"]) and out["loss"].dim() == 0
    assert {"augself_crop", "augself_color", "pos_cos", "neg_cos", "ssl_loss"} <= set(out)
    out["loss"].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    model.on_before_optimizer_step(0)
    model.on_after_step(Progress(1, 10))


def test_moco_queue_wraps_around():
    model = build_framework("moco", "cifar_resnet18", CONDS["proj-none"], small("moco"), image_size=16)
    model.queue_ptr.fill_(20)
    keys = torch.nn.functional.normalize(torch.randn(6, 128), dim=1)
    model.enqueue(keys)
    assert int(model.queue_ptr) == 2
    torch.testing.assert_close(model.queue[20:24], keys[:4])
    torch.testing.assert_close(model.queue[0:2], keys[4:])


@pytest.mark.parametrize("mode", ["queries", "keys"])
def test_moco_enqueue_switch(mode):
    torch.manual_seed(0)
    opts = FRAMEWORKS["moco"].Options(proj_hidden=32, queue=24, enqueue=mode)
    model = build_framework("moco", "cifar_resnet18", CONDS["proj-cat"], opts, image_size=16).train()
    out = model(*_batch())
    expected = out["z1"] if mode == "queries" else out["z2"]
    torch.testing.assert_close(model.queue[:6], expected.detach())


def test_ema_update_and_cosine_momentum():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(list(b.parameters()), list(a.parameters()), 0.9)
    torch.testing.assert_close(b.weight, 0.9 * wb + 0.1 * wa)
    assert cosine_momentum(0.996, 0, 100) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 100, 100) == pytest.approx(1.0)
    assert cosine_momentum(0.996, 50, 100) == pytest.approx(0.998)


def test_target_projector_is_conditioned_and_tracks_online():
    torch.manual_seed(0)
    model = build_framework("byol", "cifar_resnet18", CONDS["proj-cat"], small("byol"), image_size=16)
    assert model.target_projector.embed is not None
    assert not any(p.requires_grad for p in model.target_projector.parameters())
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    before = model.target_projector.embed[0].weight.clone()
    model.on_after_step(Progress(1, 10))
    assert not torch.equal(before, model.target_projector.embed[0].weight)


def test_swav_prototypes_frozen_then_trained():
    """Upstream (A trainers.py:384-386) drops the prototypes' gradient while Ignite's 1-based iteration
    is below 410: 0-based steps 0 to 408 are frozen, step 409 (iteration 410) updates them."""
    torch.manual_seed(0)
    model = build_framework("swav", "mini_resnet", CONDS["proj-none"], small("swav"), image_size=16).train()
    model(*_batch())["loss"].backward()
    assert model.prototypes.weight.grad is not None
    model.on_before_optimizer_step(408)
    assert model.prototypes.weight.grad is None
    model(*_batch())["loss"].backward()
    model.on_before_optimizer_step(409)
    assert model.prototypes.weight.grad is not None


def test_param_groups_simsiam_fixed_and_barlow_bias_scale():
    s = build_framework("simsiam", "cifar_resnet18", CONDS["proj-none"], small("simsiam"), image_size=16)
    groups = s.param_groups()
    assert groups[1].get("fixed_lr") and len(groups[1]["params"]) == len(list(s.predictor.parameters()))
    b = build_framework("barlow_twins", "cifar_resnet18", CONDS["proj-none"], small("barlow_twins"), image_size=16)
    g = b.param_groups()
    assert g[1]["lr_scale"] == pytest.approx(0.024) and all(p.ndim == 1 for p in g[1]["params"])
    assert FRAMEWORKS["mocov3"].optimizer == "adamw" and FRAMEWORKS["mocov3"].warmup_epochs == 40


def test_unknown_framework_is_refused():
    with pytest.raises(ValueError, match="--framework must be one of"):
        build_framework("dino", "resnet18", CONDS["proj-none"])


@pytest.mark.parametrize("name", ["moco", "simclr"])
def test_losses_are_computed_in_fp32_under_bf16_autocast(name):
    """The loss equals an fp32 reference on the framework's own (fp32) embeddings; a bf16 matmul in
    the loss would miss by ~1e-3."""
    from models.losses import info_nce, nt_xent
    torch.manual_seed(0)
    model = build_framework(name, "cifar_resnet18", CONDS["proj-cat"], small(name), image_size=16).train()
    queue = model.queue.clone() if name == "moco" else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*_batch())
    z1, z2 = out["z1"], out["z2"]
    assert z1.dtype == torch.float32
    ref = info_nce(z1, z2, queue, 0.2) if name == "moco" else nt_xent(z1, z2, 0.2)
    assert abs(out["ssl_loss"].item() - ref.item()) < 1e-5


def test_byol_momentum_changes_once_an_epoch_as_upstream():
    """Upstream (A trainers.py:282, C trainers_cond.py:435) takes BYOL's momentum from Ignite's 1-based
    epoch, 1 - (1 - 0.996)(cos(pi (epoch - 1) / max_epochs) + 1) / 2: one value for every step of an epoch."""
    model = build_framework("byol", "mini_resnet", CONDS["proj-none"], FrameworkOptions(proj_hidden=32), image_size=16)
    applied = []
    model.update_targets = applied.append
    for step in range(1, 13):  # 3 epochs of 4 steps
        model.on_after_step(Progress(step, 12, epochs=3))
    expected = [1 - 0.004 * (math.cos(math.pi * (epoch - 1) / 3) + 1) / 2 for epoch in (1, 2, 3) for _ in range(4)]
    assert applied == pytest.approx(expected, rel=0, abs=1e-15)


@pytest.mark.parametrize("name", ["moco", "mocov3", "byol"])
def test_target_update_follows_the_weights_after_a_move_and_a_load(name):
    """update_targets gathers its parameter lists once; a later dtype move or checkpoint load must
    still be averaged (both keep the Parameter objects), over the backbone and the projector."""
    torch.manual_seed(0)
    model = build_framework(name, "cifar_resnet18", CONDS["proj-cat"], small(name), image_size=16)
    model.on_after_step(Progress(1, 10))  # the first call gathers the lists
    other = build_framework(name, "cifar_resnet18", CONDS["proj-cat"], small(name), image_size=16)
    model = model.double()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in other.state_dict().items()})
    with torch.no_grad():  # online weights that differ from their targets
        for p in [*model.backbone.parameters(), *model.projector.parameters()]:
            p.add_(torch.randn_like(p))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.on_after_step(Progress(4, 10, epochs=5))  # epoch 2 of 5
    # BYOL: upstream's per-epoch cosine, 1 - (1 - 0.996)(cos(pi (epoch - 1) / epochs) + 1) / 2; MoCo: constant
    m = 1 - 0.004 * (math.cos(math.pi / 5) + 1) / 2 if name == "byol" else 0.999
    targets = [(n, p) for n, p in model.named_parameters() if n.startswith(("target_backbone.", "target_projector."))]
    assert len(targets) == len(list(model.backbone.parameters())) + len(list(model.projector.parameters()))
    for n, p in targets:
        expected = m * before[n] + (1 - m) * before[n.removeprefix("target_")]
        torch.testing.assert_close(p, expected, msg=n)
        assert not torch.equal(p, before[n])


def test_a_framework_added_to_the_registry_trains_through_the_entry_point(tmp_path, monkeypatch, capsys):
    """README 'Adding a framework': a Framework subclass declaring its hyper-parameter in its Options,
    and one registry entry, nothing else: the entry point has its flag, validation its check, and the
    value given on the command line reaches the framework; conditioning, AugSelf, logging and
    checkpoints come from the base and the trainer."""
    from dataclasses import dataclass

    import pretrain_cond
    from models.frameworks.base import Framework, fp32
    from models.losses import nt_xent
    from models.projector import ProjectorSpec
    from tests.data_formats import write_cifar
    from utils.checkpoint import load_checkpoint

    seen = []

    class WarmSimCLR(Framework):  # NT-Xent at a temperature of its own (0.5 by default), 64-d embeddings
        @dataclass
        class Options(FrameworkOptions):
            temperature: float = option(0.5, "NT-Xent temperature", check=(lambda v: v > 0, "must be positive"))

        @staticmethod
        def projector_spec(feat_dim, opts):
            return ProjectorSpec(hidden=opts.proj_hidden or feat_dim, out=64, depth=2)

        def ssl_forward(self, x1, x2, d1, d2):
            seen.append(self.opts.temperature)
            y1, y2 = self.backbone(x1), self.backbone(x2)
            z1, z2 = self.projector(y1, d1).float(), self.projector(y2, d2).float()
            with fp32(z1):
                loss = nt_xent(z1, z2, self.opts.temperature)
            return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}

    monkeypatch.setitem(FRAMEWORKS, "warm_simclr", WarmSimCLR)
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=64, n_test=32)
    logdir = tmp_path / "run"
    argv = [str(a) for a in [
        "--logdir", logdir, "--framework", "warm_simclr", "--dataset", "cifar10", "--datadir", data, "--model",
        "mini_resnet", "--batch-size", "32", "--max-epochs", "1", "--proj-hidden", "32", "--device", "cpu",
        "--print-freq", "1", "--ss-crop", "0.5",
        "--aug-treatment", "mlp", "--aug-nn-width", "8", "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color"]]
    with pytest.raises(SystemExit):  # its check, in one line naming its flag, before anything is written
        pretrain_cond.main([*argv, "--warm-simclr-temperature", "-1"])
    assert "--warm-simclr-temperature must be positive, got -1.0" in capsys.readouterr().err
    assert not logdir.exists() and not seen
    pretrain_cond.main([*argv, "--warm-simclr-temperature", "0.25"])
    assert seen and set(seen) == {0.25}
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert ckpt["args"]["framework"] == "warm_simclr" and ckpt["args"]["warm_simclr_temperature"] == 0.25
    assert ckpt["epoch"] == 1
    assert ckpt["model"]["projector.net.3.weight"].shape == (64, 32)  # its own projector ...
    assert any(k.startswith("projector.embed.") for k in ckpt["model"])  # ... conditioned on the descriptor
    assert any(k.startswith("augself.heads.crop") for k in ckpt["model"])
    assert "augself_crop=" in (logdir / "log.txt").read_text()


def test_framework_options_come_from_their_flags_and_keep_the_recipe_where_a_flag_is_absent():
    """The run builds the chosen framework's Options from its --<framework>-* flags; arguments stored
    before a flag existed (an older checkpoint's) give that field the recipe's value."""
    from models.frameworks.options import options_from_args
    moco = FRAMEWORKS["moco"].Options
    opts = options_from_args(moco, "moco", {"moco_enqueue": "keys", "simclr_global_negatives": True}, proj_hidden=8)
    assert (opts.enqueue, opts.queue, opts.temperature, opts.proj_hidden) == ("keys", 65536, 0.2, 8)
    assert options_from_args(FRAMEWORKS["mocov3"].Options, "mocov3", {}).momentum_schedule == "constant"
    with pytest.raises(TypeError, match="SimCLR takes SimCLR.Options"):  # another framework's options
        build_framework("simclr", "mini_resnet", CONDS["proj-none"], opts, image_size=16)


def test_moco_augself_sees_the_momentum_features_of_view_2():
    """MoCo v2 + AugSelf: view 2 goes through the momentum encoder only (upstream feeds the heads its
    no-grad features); the online backbone runs once, on x1, and x2 stays out of its BN statistics."""
    torch.manual_seed(0)
    model = build_framework("moco", "mini_resnet", CONDS["proj-cat"], small("moco"), augself_weights={"crop": 0.5},
                            image_size=16).train()
    x1, x2, d1, d2 = _batch()
    x2.requires_grad_(True)
    online_alone = copy.deepcopy(model.backbone)
    online_alone(x1)  # the running statistics that x1 alone leaves
    calls = {"backbone": [], "target_backbone": []}
    for name, seen in calls.items():
        getattr(model, name).register_forward_hook(lambda m, args, out, seen=seen: seen.append((args[0], out)))
    out = model(x1, x2, d1, d2, targets=_targets())
    assert len(calls["backbone"]) == 1 and calls["backbone"][0][0] is x1
    assert len(calls["target_backbone"]) == 1 and calls["target_backbone"][0][0] is x2
    y2 = calls["target_backbone"][0][1]
    assert not y2.requires_grad
    heads_in = []
    model.augself.heads["crop"].register_forward_hook(lambda m, args, o: heads_in.append(args[0]))
    model(x1, x2, d1, d2, targets=_targets())
    torch.testing.assert_close(heads_in[0][:6, 128:], calls["target_backbone"][1][1])  # [y1, y2_target]
    out["loss"].backward()
    assert x2.grad is None
    bns = [(a, b) for a, b in zip(online_alone.modules(), model.backbone.modules())
           if isinstance(a, torch.nn.BatchNorm2d)]
    online_alone(x1)  # model's online backbone has now seen x1 twice, never x2
    for a, b in bns:
        torch.testing.assert_close(b.running_mean, a.running_mean)
        torch.testing.assert_close(b.running_var, a.running_var)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_mocov3_momentum_is_upstreams_constant_by_default_and_cosine_on_request(schedule):
    """Upstream CASSLE averages MoCo v3's targets at a constant 0.999; the official recipe's cosine
    schedule (0.99 at step 0 rising to 1) is --mocov3-momentum-schedule cosine."""
    opts = FrameworkOptions(proj_hidden=32) if schedule == "constant" else \
        FRAMEWORKS["mocov3"].Options(proj_hidden=32, momentum_schedule="cosine")
    torch.manual_seed(0)
    model = build_framework("mocov3", "mini_resnet", CONDS["proj-none"], opts, image_size=16)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    online, target = model.backbone.conv1.weight, model.target_backbone.conv1.weight
    for step in (0, 3):
        before_t, before_o = target.detach().clone(), online.detach().clone()
        model.on_after_step(Progress(step, 10))
        m = 0.999 if schedule == "constant" else 1 - 0.01 * (math.cos(math.pi * step / 10) + 1) / 2
        torch.testing.assert_close(target, m * before_t + (1 - m) * before_o)


def test_an_unknown_mocov3_momentum_schedule_is_refused_by_its_flag():
    with pytest.raises(ValueError, match="--mocov3-momentum-schedule must be one of"):
        build_framework("mocov3", "mini_resnet", CONDS["proj-none"],
                        FRAMEWORKS["mocov3"].Options(proj_hidden=32, momentum_schedule="linear"), image_size=16)


@pytest.mark.parametrize("inj", list(CONDS))
def test_a_framework_needs_descriptors_only_when_its_projector_is_conditioned(inj):
    torch.manual_seed(0)
    model = build_framework("simclr", "cifar_resnet18", CONDS[inj], small("simclr"), image_size=16).eval()
    assert model.needs_descriptors is (inj != "proj-none")
    x1, x2, d1, d2 = _batch()
    with torch.no_grad():
        given = model(x1, x2, d1, d2)["loss"]
        if model.needs_descriptors:  # the descriptors change what it computes
            assert not torch.equal(given, model(x1, x2, d1 + 1, d2 - 1)["loss"])
        else:  # the step may leave them out: the result is the same without them
            assert torch.equal(given, model(x1, x2, None, None)["loss"])
