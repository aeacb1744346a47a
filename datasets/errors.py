"""The one error type for bad data: a one-line message naming the path and the expected layout."""
from __future__ import annotations

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
