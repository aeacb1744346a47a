"""error_line: bad-input errors become one line, also when a DataLoader worker raised them; bugs do not.
duration: the ETA in the progress lines."""
import pytest
from torch.utils.data import DataLoader, Dataset

from datasets.errors import DataError
from utils.logging import duration, error_line


class _Fails(Dataset):
    def __init__(self, error: Exception):
        self.error = error

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise self.error


def _from_worker(error: Exception) -> Exception:
    with pytest.raises(Exception) as e:
        next(iter(DataLoader(_Fails(error), num_workers=1)))
    return e.value


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
