"""utils.training.guard: the record of the first non-finite step, kept on the device and read only at checks,
and the poll every rank answers alike (one process here; two ranks in tests/scripts/test_sweeps.py)."""
import torch

from utils.training.guard import NonFiniteGuard, StepChecks
from utils.preemption import StopRequest


def _layer_with_grad(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(3, 2)
    for p in layer.parameters():
        p.grad = torch.full_like(p, 0.5)
    layer.bias.grad[1] = value
    return layer


def test_the_first_bad_step_and_its_loss_terms_are_kept_until_read():
    layer = _layer_with_grad(0.5)
    guard = NonFiniteGuard(layer.parameters(), torch.device("cpu"))
    guard.observe(1, {"loss": torch.tensor(2.0), "ssl_loss": torch.tensor(1.5)})
    assert not bool(guard.bad)
    guard.observe(2, {"loss": torch.tensor(float("nan")), "ssl_loss": torch.tensor(1.25)})
    guard.observe(3, {"loss": torch.tensor(float("inf")), "ssl_loss": torch.tensor(7.0)})  # a later bad step
    assert bool(guard.bad)
    assert guard.describe(steps_per_epoch=2) == "non-finite loss at epoch 1 step 2/2 (loss=nan ssl_loss=1.25)"


def test_a_non_finite_gradient_under_a_finite_loss_is_caught_unless_a_grad_scaler_owns_it():
    for value in (float("nan"), float("inf")):
        checked = NonFiniteGuard(_layer_with_grad(value).parameters(), torch.device("cpu"), grads=True)
        checked.observe(5, {"loss": torch.tensor(0.75)})
        assert checked.describe(4) == "non-finite gradient at epoch 2 step 1/4 (loss=0.75)"
        scaled = NonFiniteGuard(_layer_with_grad(value).parameters(), torch.device("cpu"), grads=False)  # fp16
        scaled.observe(5, {"loss": torch.tensor(0.75)})
        assert not bool(scaled.bad)


def test_one_process_poll_reports_a_recorded_signal_and_a_bad_step():
    stop = StopRequest(["USR1"])
    guard = NonFiniteGuard([], torch.device("cpu"))
    checks = StepChecks(stop, guard, torch.device("cpu"), world=1)
    assert checks.poll() == (False, False)
    stop._record(stop.signals[0], None)  # what the handler does when SIGUSR1 comes
    guard.observe(1, {"loss": torch.tensor(float("nan"))})
    assert checks.poll() == (True, True) and stop.name == "SIGUSR1"


def test_the_guarded_step_never_waits_for_the_device(tmp_path):
    """The guard's per-step record (loss terms and every gradient's largest magnitude) adds no op that
    reads a value back to the host; a NaN is then seen only at a check."""
    from tests.helpers import StubEngine, tiny_run
    from tests.utils.training.test_step import SyncOps
    from utils.training.step import make_step
    run = tiny_run(tmp_path, "--framework", "simclr", "--aug-inj-type", "proj-none")
    guard = NonFiniteGuard(run.framework.parameters(), run.device)
    step = make_step(run, total_steps=10, guard=guard)
    batch = next(iter(run.loader))
    step(StubEngine(), batch)
    with SyncOps() as mode:
        step(StubEngine(), batch)
    assert mode.seen == [], sorted(set(mode.seen))
    assert not bool(guard.bad) and guard.names[0] == "loss"
