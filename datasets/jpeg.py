"""JPEG files read the way both decoders see them: bytes, the header checks that say whether a
file is a plain YCbCr JPEG, and the crops a loader worker makes of it.

A plain JPEG (three YCbCr components, every quantisation table defined before its scan, a first
scan naming the frame's components, an end marker after it) decodes to the same pixels in
libjpeg-turbo whichever library calls it. A loader worker decodes such a file with torchvision's
CPU decoder and crops it with torch's antialiased uint8 resize: faster than PIL's decode and
crops on one core (``scripts/bench/bench_decode.py``, its ``workers`` and ``pil`` rows;
docs/speed.md), with PIL's decoded pixels exactly and crops within one level of PIL's. Every
other file (PNG, CMYK, grayscale, RGB-coded, truncated, malformed) is decoded and cropped by PIL,
as upstream does, and PIL's refusal names the file.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import resize

from augmentations import crop_pil_box

from .errors import PIL_FILE_ERRORS, unreadable


def read_bytes(path: str) -> Tensor:
    """A file's bytes in a torch-allocated tensor (``read_file``'s tensors cannot be sent from a
    loader worker: their storage cannot be moved to shared memory, and the worker hangs)."""
    out = torch.empty(os.path.getsize(path), dtype=torch.uint8)
    with open(path, "rb") as f:
        f.readinto(out.numpy())
    return out


def first_scan(raw: bytes) -> int:
    """Where JPEG bytes ``raw`` start their first scan (the SOS marker FFDA), or -1 if they never do.

    The walk follows segment lengths from the SOI, so an Exif thumbnail's own markers (inside APP1)
    cannot mislead it, and skips stray bytes between segments as PIL and libjpeg do.
    """
    i = 2  # after SOI
    while (i := raw.find(b"\xff", i)) >= 0 and i + 4 <= len(raw):
        marker = raw[i + 1]
        if marker == 0xDA:
            return i
        i += 1 if marker == 0xFF else 2 + (raw[i + 2] << 8 | raw[i + 3])  # a fill byte, or a segment
    return -1


def ends_after_scan(raw: bytes, sos: int) -> bool:
    """Whether JPEG bytes ``raw`` hold an end-of-image marker (FFD9) after their first scan starts
    (at ``sos``, from ``first_scan``).

    A truncated file has none. PIL and libjpeg refuse such a file, but nvJPEG is not known to, and
    a decoder that fills the missing rows would train on them silently; so a worker routes the file
    to PIL, which names it. FFD9 cannot occur in entropy-coded data (0xFF is stuffed), and a
    trailer after the EOI does not hide it.
    """
    return sos >= 0 and raw.rfind(b"\xff\xd9", sos) >= 0  # rfind starts at the end, where most files have it


def scan_in_frame(raw: bytes, sos: int, im: Image.Image) -> bool:
    """Whether the first scan (at ``sos``) of an opened JPEG (bytes ``raw``) names 1 to 4
    components, all of them the frame's. Every legal file does; libjpeg refuses one that does not,
    and a decoder that skipped the check would fill a view from a component that is not there.
    Whether nvJPEG refuses such a file is not known, so a worker sends it to PIL, which names it."""
    count = raw[sos + 4] if 0 <= sos < len(raw) - 4 else 0
    named = raw[sos + 5:sos + 5 + 2 * count:2]  # each component: its id, then its Huffman tables
    return 1 <= count <= 4 and len(named) == count and set(named) <= {c[0] for c in im.layer}


def ycbcr_jpeg(im: Image.Image) -> bool:
    """Whether an opened file (header read) is a three-channel YCbCr JPEG, the kind nvJPEG is made
    for. A JPEG coded in RGB (Adobe transform 0, or components named R, G, B) is not: libjpeg skips
    the YCbCr conversion for it, which GPU decoders are not known to do, so PIL decodes it."""
    if im.format != "JPEG" or im.mode != "RGB":
        return False
    rgb_coded = im.info.get("adobe_transform") == 0 or [c[0] for c in getattr(im, "layer", [])] == [82, 71, 66]
    return not rgb_coded


def tables_defined(im: Image.Image) -> bool:
    """Whether an opened JPEG (header read, up to its first scan) defines every quantisation table
    its components name. nvJPEG decodes a file without them and raises nothing (torch 2.11),
    so its pixels would be wrong without a word; libjpeg refuses it, so PIL names it.
    A legal file that defines a table only between scans goes to PIL too, which reads it as the
    worker path would."""
    return {c[3] for c in im.layer} <= im.quantization.keys()  # layer: (id, h, v, table) per component


class JpegHeader(NamedTuple):
    """A file's bytes and what its header says: its size, and whether it is a plain JPEG."""
    data: Tensor  # uint8 [bytes]
    height: int
    width: int
    plain: bool


def read_pil(path: str, data: Tensor, read):
    """``read(PIL image)`` of the file ``path`` whose bytes are ``data``; a file PIL cannot read
    raises ``unreadable``, naming it."""
    try:
        with Image.open(io.BytesIO(data.numpy())) as im:
            return read(im)
    except PIL_FILE_ERRORS as e:
        raise unreadable(path, e) from None


def read_header(path: str) -> JpegHeader:
    """The file's bytes, size and whether it is a plain JPEG, from its header alone (no decoding)."""
    data = read_bytes(path)
    raw = data.numpy().tobytes()
    sos = first_scan(raw)
    (w, h), plain = read_pil(path, data, lambda im: (  # PIL opens lazily: this reads the header
        im.size, ycbcr_jpeg(im) and tables_defined(im) and scan_in_frame(raw, sos, im)))
    return JpegHeader(data, h, w, plain and ends_after_scan(raw, sos))


def decode(data: Tensor | list[Tensor], device: torch.device | str = "cpu") -> Tensor | list[Tensor]:
    """JPEG bytes (one file, or a list decoded in one call) decoded by torchvision on ``device``:
    libjpeg-turbo on a CPU, nvJPEG on CUDA; uint8 [3, H, W] each."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for TorchCodec's
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def worker_crops(path: str, head: JpegHeader, boxes: Sequence[Tensor], size: int) -> Tensor:
    """The file's crops to ``boxes`` (top, left, h, w), each resized to ``size`` x ``size``
    (antialiased bilinear): uint8 [len(boxes), 3, size, size]. A plain JPEG is decoded by
    libjpeg-turbo through torchvision and resized by torch's vectorised uint8 kernel (the two
    together faster than PIL's, docs/speed.md); any other file, or one that decoder refuses, by PIL."""
    image = None
    if head.plain:
        try:
            image = decode(head.data)
        except RuntimeError:  # e.g. sampling factors libjpeg refuses: PIL, given the file next, names it
            pass
    if image is None:
        rgb = read_pil(path, head.data, lambda im: im.convert("RGB"))
        return torch.stack([crop_pil_box(rgb, box, size) for box in boxes])
    rows = (box.int().tolist() for box in boxes)
    return torch.stack([resize(image[:, t:t + h, x:x + w], [size, size], antialias=True) for t, x, h, w in rows])
