"""utils.training.run: what build_run makes of the flags (backbone compilation, the augmentation recipe)."""
import dataclasses

import pytest
import torch

from models import FRAMEWORKS
from tests.helpers import StubEngine, tiny_run
from utils.training.step import make_step


def _compile_spy(monkeypatch) -> list:
    """Record how ``nn.Module.compile`` is called, then compile as asked."""
    calls, real = [], torch.nn.Module.compile

    def spy(self, *args, **kwargs):
        calls.append((type(self).__name__, kwargs))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Module, "compile", spy)
    return calls


def test_compile_compiles_the_online_backbone_in_its_mode_and_trains_the_same(tmp_path, monkeypatch):
    """--compile / --compile-mode: only the online backbone goes through torch.compile, in the mode
    asked for, and the run is the eager run (aot_eager traces the same graphs without codegen). The
    k-NN monitor runs it eager: no graph is compiled for eval mode or its batch shapes."""
    import types

    from torch._dynamo.backends.registry import lookup_backend

    import utils.training.run
    import utils.training.trainer as trainer
    calls, graphs = _compile_spy(monkeypatch), []

    def counting_aot_eager(gm, example_inputs, **options):  # options: the mode, as Inductor would get it
        graphs.append(options)
        return lookup_backend("aot_eager")(gm, example_inputs)
    monkeypatch.setattr(utils.training.run, "BACKBONE_COMPILE_BACKEND", counting_aot_eager)  # inductor is slow on CPU
    losses, weights = {}, {}
    for name, flags in {"eager": [], "compiled": ["--compile", "--compile-mode", "reduce-overhead"]}.items():
        run = tiny_run(tmp_path / name, "--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type",
                       "proj-cat", "--aug-cond", "crop", "color", "--base-lr", "1.0", *flags)
        step, batch = make_step(run, total_steps=10), next(iter(run.loader))
        init = {k: p.detach().clone() for k, p in run.framework.backbone.named_parameters()}
        losses[name] = [float(step(StubEngine(), batch)["loss"]) for _ in range(2)]
        weights[name] = {k: (p.detach().clone(), init[k]) for k, p in run.framework.backbone.named_parameters()}
        compiled_call = run.framework.backbone._compiled_call_impl
        assert (compiled_call is not None) == (name == "compiled")
        assert run.framework.target_backbone._compiled_call_impl is None  # MoCo's key encoder stays eager
    assert calls == [("MiniResNet", {"backend": counting_aot_eager, "mode": "reduce-overhead"})]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
    moved = {k: (w - w0).abs().max().item() for k, (w, w0) in weights["eager"].items()}
    assert sum(m > 1e-3 for m in moved.values()) >= len(moved) / 2  # the steps moved the weights ...
    for k, (w, _) in weights["compiled"].items():  # ... far more than the two runs differ
        assert (w - weights["eager"][k][0]).abs().max().item() <= 1e-5 + 1e-3 * moved[k], k
    trained = len(graphs)
    assert trained >= 1 and all(options == {"mode": "reduce-overhead"} for options in graphs)
    small = lambda d, n: types.SimpleNamespace(images=d.images[:n], labels=d.labels[:n])  # noqa: E731
    run.data = dataclasses.replace(run.data, knn_train=small(run.data.knn_train, 300),
                                   knn_test=small(run.data.knn_test, 70))  # batches of 256 and 44
    assert 0 <= trainer.knn_monitor(run)["nn1"] <= 1
    assert len(graphs) == trained
    step(StubEngine(), batch)  # and training goes on with the graphs it has
    assert len(graphs) == trained


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_cuda_backbone_compiled_with_cuda_graphs_trains_like_eager(tmp_path, framework):
    """--compile --compile-mode reduce-overhead (the default on one GPU): Inductor's CUDA graphs replay
    the online backbone, called on two views a step (beside the eager momentum encoder where the
    framework has one), across steps and around the k-NN monitor, with the eager run's losses."""
    import utils.training.trainer as trainer
    losses, knn = {}, {}
    for name, flags in {"eager": [], "graphs": ["--compile", "--compile-mode", "reduce-overhead"]}.items():
        run = tiny_run(tmp_path / name, "--framework", framework, "--aug-treatment", "mlp", "--aug-inj-type",
                       "proj-cat", "--aug-cond", "crop", "color", "--precision", "fp32", "--base-lr", "1.0",
                       device="cuda")
        step, batches = make_step(run, total_steps=10), iter(run.loader)
        losses[name] = [float(step(StubEngine(), next(batches))["loss"]) for _ in range(4)]
        knn[name] = trainer.knn_monitor(run)["nn1"]  # between epochs; then training goes on
        losses[name].append(float(step(StubEngine(), next(batches))["loss"]))
    first = losses["eager"][0]
    moved = max(abs(v - first) for v in losses["eager"])
    assert moved > 10 * 2e-3 * abs(first)  # training moved the loss ...
    # ... far more than the runs differ: within 0.2 % of the loss, or 1 % of how far it moved where the loss
    # is near zero (SimSiam's negative cosine starts there, and a relative bound alone is ill-posed)
    for graphs, eager in zip(losses["graphs"], losses["eager"]):
        assert graphs == pytest.approx(eager, rel=2e-3, abs=moved / 100)
    assert knn["graphs"] == pytest.approx(knn["eager"], abs=3 / 359)  # a neighbour or two may swap


def test_blur_impl_reaches_the_augmentation_recipe(tmp_path):
    base = ("--aug-inj-type", "proj-none")
    assert tiny_run(tmp_path / "a", *base, "--blur-impl", "shift").cfg.blur_impl == "shift"
    assert tiny_run(tmp_path / "b", *base).cfg.blur_impl == "conv"  # CPU: eager augmentation, so the convolution
