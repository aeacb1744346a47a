"""The one error type for bad data: a one-line message naming the path and the expected layout."""
from __future__ import annotations

import bisect
import os
import re
from typing import Callable, TypeVar
from urllib.error import URLError

from torch.utils.data import ConcatDataset, Dataset, Subset

T = TypeVar("T")


class DataError(ValueError):
    """Bad data on disk or a bad data flag; the entry points print it as one line and stop."""


def from_torchvision(make: Callable[[], T], root: str, name: str, layout: str | None = None) -> T:
    """``make()`` a torchvision dataset; its "not found or corrupted" RuntimeError becomes a DataError
    naming ``--datadir`` and the expected layout (or torchvision's own words when none is given), and
    a download that cannot reach its server one naming ``--download``."""
    try:
        return make()
    except URLError as e:  # only a download raises it: no network, a moved mirror (HTTPError)
        raise DataError(f"--download: could not fetch {name} into --datadir {root} ({e.reason}); "
                        "fetch it where a network exists and copy it there") from e
    except RuntimeError as e:
        expected = f"expected {layout}" if layout else str(e)
        raise DataError(f"--datadir {root}: {name} not found or corrupted in torchvision's layout ({expected}); "
                        "--download fetches it where a network exists") from e


# What PIL raises for a file it cannot read (SyntaxError: some broken headers)
PIL_FILE_ERRORS = (OSError, ValueError, SyntaxError)


def unreadable(path: str, err: BaseException) -> DataError:
    """The error for an image file that cannot be decoded (PIL's own message rarely names the file)."""
    from PIL import UnidentifiedImageError
    if isinstance(err, UnidentifiedImageError):  # PIL's words hold a repr of the file object
        reason = "not an image format PIL recognises"
    else:  # torchvision's decoders start with "<op>, <source file>:<line>, "
        reason = re.sub(r"^\w+, \S+:\d+, ", "", str(err).splitlines()[0]) if str(err) else type(err).__name__
    return DataError(f"{path}: cannot read this image ({reason}); replace the file or remove it")


def read_rgb(path: str):
    """torchvision's ``default_loader`` (PIL, RGB), raising ``unreadable`` for a corrupt or truncated file."""
    from torchvision.datasets.folder import default_loader
    try:
        return default_loader(path)
    except PIL_FILE_ERRORS as e:
        raise unreadable(path, e) from None


class NamesUnreadable(Dataset):
    """``dataset`` whose unreadable images raise ``unreadable`` naming the file: every downstream split
    and few-shot pool. torchvision's own classes (Food-101, Pets, Cars, ...) open their files
    themselves, so PIL's error that reaches the user names none; one wrapper serves them and the
    folder datasets alike. Attributes of the wrapped split (``indices``, ...) read through."""

    def __init__(self, dataset: Dataset, name: str):
        self._wrapped, self._name = dataset, name

    def __len__(self) -> int:
        return len(self._wrapped)

    def __getitem__(self, i: int):
        try:
            return self._wrapped[i]
        except (OSError, SyntaxError) as e:  # PIL's errors for a bad file; a DataError passes as it is
            raise unreadable(image_path(self._wrapped, i) or f"--dataset {self._name}: image {i}", e) from None

    def __getattr__(self, attr: str):
        if attr.startswith("_"):  # its own, not set yet while a loader worker unpickles it
            raise AttributeError(attr)
        return getattr(self._wrapped, attr)


def image_path(ds: Dataset, i: int) -> str | None:
    """The file behind item ``i``, through Subset and ConcatDataset, for the file lists torchvision's
    classes keep (public or not); None where there is none (e.g. CIFAR's arrays)."""
    while isinstance(ds, (Subset, ConcatDataset)):
        if isinstance(ds, Subset):
            ds, i = ds.dataset, ds.indices[i]
        else:
            j = bisect.bisect_right(ds.cumulative_sizes, i)
            ds, i = ds.datasets[j], i - (ds.cumulative_sizes[j - 1] if j else 0)
    if all(hasattr(ds, a) for a in ("categories", "y", "index", "root")):  # Caltech101
        return os.path.join(ds.root, "101_ObjectCategories", ds.categories[ds.y[i]], f"image_{ds.index[i]:04d}.jpg")
    for attr in ("samples", "_samples", "_image_files", "_images"):
        files = getattr(ds, attr, None)
        if files is not None:
            f = files[i]
            return str(f[0] if isinstance(f, tuple) else f)
    return None
