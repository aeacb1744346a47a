"""error_line: bad-input errors become one line, also when a DataLoader worker raised them; bugs do not.
Pace, duration: the rate and ETA in the progress lines. write_json is atomic; a wandb that cannot start
leaves the run logging to its file and TensorBoard."""
import pytest
from torch.utils.data import DataLoader, Dataset

from datasets.errors import DataError
from utils.logging import Pace, RunLogger, duration, error_line


class _Fails(Dataset):
    def __init__(self, error: Exception):
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise self.error


def _from_worker(error: Exception) -> Exception:
    loader = iter(DataLoader(_Fails(error), num_workers=1))
    try:
        next(loader)
    except Exception as e:  # noqa: BLE001 - what the main process receives, whatever it is
        caught = e.with_traceback(None)
    else:
        pytest.fail("the worker's error did not reach the main process")
    # Ended now, its worker ends at once. Held by the traceback's frames until the garbage collector
    # came, it ended later, also inside the next test's forked workers, and a test waited 5 s for it.
    del loader
    return caught


def test_a_data_error_from_a_worker_gives_its_own_line():
    e = _from_worker(DataError("/data/x.jpg: cannot read this image (truncated); replace the file or remove it"))
    assert "Traceback" in str(e)  # what the main process receives
    assert error_line(e) == "/data/x.jpg: cannot read this image (truncated); replace the file or remove it"


def test_value_errors_are_bad_input_and_other_errors_are_bugs():
    assert error_line(ValueError("--batch-size 512 is larger than the dataset (100 images)")) == \
        "--batch-size 512 is larger than the dataset (100 images)"
    assert error_line(_from_worker(RuntimeError("shape mismatch"))) is None
    assert error_line(KeyError("DataError: not really")) is None


def test_duration_gives_the_two_largest_units():
    assert [duration(x) for x in (0, 44.6, 60, 725, 3600, 11_520, 2 * 86_400 + 4 * 3600 + 59)] == \
        ["0s", "45s", "1m00s", "12m05s", "1h00m", "3h12m", "2d04h"]


def test_write_json_is_atomic_and_a_full_disk_is_one_line(tmp_path, monkeypatch):
    import errno
    import json
    import os
    from utils import logging as L
    path = str(tmp_path / "knn.json")
    L.write_json(path, {"knn": 0.5})

    def full(obj, f, **kw):
        f.write("{")  # part of it reached the file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(L.json, "dump", full)
    with pytest.raises(ValueError, match=rf"^cannot write {path} \(No space left on device\)$"):
        L.write_json(path, {"knn": 0.9})
    monkeypatch.undo()
    assert json.loads(open(path).read()) == {"knn": 0.5} and os.listdir(tmp_path) == ["knn.json"]


def test_pace_leaves_the_start_up_window_out_of_the_time_left():
    """With --compile the first window can take minutes; counted in every step, it inflated the
    ETA of a 500-epoch run several-fold during its first epoch."""
    p = Pace()
    p.start(0.0, 0)
    assert p.update(100.0, 10, 1000) == (10.0, 990 * 10.0)  # compilation: only the window's pace is known
    assert p.update(110.0, 20, 1000) == (1.0, 980 * 1.0)  # from then on, the pace since the first window
    assert p.update(125.0, 30, 1000) == (1.5, 970 * 1.25)  # (a k-NN evaluation ran in this window)
    p.start(500.0, 200)  # a resumed run starts its own count
    assert p.update(530.0, 210, 1000) == (3.0, 790 * 3.0)


def test_a_wandb_that_fails_to_start_is_a_warning_and_the_run_logs_on(tmp_path, monkeypatch):
    import sys
    import types

    def refuse(**kwargs):
        raise ConnectionError("no network")
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Settings=lambda **kw: None, init=refuse))
    monkeypatch.setenv("WANDB_PROJECT", "cassle-test")
    with pytest.warns(UserWarning, match=r"^wandb disabled: ConnectionError: no network$"):
        log = RunLogger(str(tmp_path), {"seed": 0})
    assert log.wandb is None
    log.info("epoch 1")
    log.scalars({"train/loss": 1.0}, 1)
    log.close()
    assert (tmp_path / "log.txt").read_text() == "epoch 1\n" and list(tmp_path.glob("events.out.tfevents.*"))
