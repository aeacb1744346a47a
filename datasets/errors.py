"""The one error type for bad data: a one-line message naming the path and the expected layout."""
from __future__ import annotations

import re
from typing import Callable, TypeVar

T = TypeVar("T")


class DataError(ValueError):
    pass


def from_torchvision(make: Callable[[], T], root: str, name: str, layout: str | None = None) -> T:
    """``make()`` a torchvision dataset; its "not found or corrupted" RuntimeError becomes a DataError
    naming ``--datadir`` and the expected layout (or torchvision's own words when none is given)."""
    try:
        return make()
    except RuntimeError as e:
        expected = f"expected {layout}" if layout else str(e)
        raise DataError(f"--datadir {root}: {name} not found or corrupted in torchvision's layout ({expected}); "
                        "--download fetches it where a network exists") from e


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
    except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for a bad file (SyntaxError: bad headers)
        raise unreadable(path, e) from None
