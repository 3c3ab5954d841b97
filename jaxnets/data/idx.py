"""MNIST and Fashion-MNIST from their IDX files.

Lectures: seed 004, Lecture 10 "Image Classification" §2.1 USPS and MNIST (line 2331):
MNIST's 70,000 digits (60,000 train, 10,000 test) are centred in their image and normalised
to a standard size.

:func:`read_idx` parses the IDX format; :func:`load_mnist` reads a split from
``<root>/<variant>/`` (:func:`jaxnets.data.files.data_folder`), downloading it with a checksum
when asked. Images are float32 in [0, 1], channels-last ``(n, 28, 28, 1)``; labels int32.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from jaxnets.checks import check_choice
from jaxnets.data import files
from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.files import CorruptFileError

__all__ = ["load_mnist", "read_idx"]

_IDX_UBYTE = 0x08
_IDX_CONTENT = {1: "labels", 3: "images"}


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise CorruptFileError(
            f"{path}: not a valid gzip file ({err}); expected a gzip-compressed IDX file "
            "(delete it and download it again, or drop the .gz suffix if it is not compressed)"
        ) from err


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (the MNIST format), plain or gzipped (``.gz``).

    The header is a big-endian magic number ``0x0000 08 D`` (two zero bytes, the type code
    0x08 = unsigned byte, the number of dimensions ``D``: 0x00000801 for a label vector,
    0x00000803 for a stack of images), then ``D`` big-endian uint32 sizes, then exactly
    ``prod(sizes)`` data bytes.

    Args:
      path: the file; a ``.gz`` suffix means gzip-compressed.
      ndim: the number of dimensions the caller expects (1 for labels, 3 for images);
        ``None`` accepts any.

    Returns:
      uint8 array of the header's shape, e.g. (60000, 28, 28) or (60000,).

    Raises:
      CorruptFileError: bad gzip, header too short, wrong magic number, unsupported type,
        truncated data or trailing bytes; the message names the file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise CorruptFileError(
            f"{path}: corrupt header: the file has {len(raw)} bytes, but an IDX file starts "
            "with a 4-byte magic number"
        )
    magic = int.from_bytes(raw[:4], "big")
    type_code, file_ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00":
        gzip_hint = " (gzip data: name the file *.gz)" if raw[:2] == b"\x1f\x8b" else ""
        raise CorruptFileError(
            f"{path}: not an IDX file: magic number 0x{magic:08X} should start with two zero "
            f"bytes, e.g. 0x00000803 for images{gzip_hint}"
        )
    if type_code != _IDX_UBYTE:
        raise CorruptFileError(
            f"{path}: IDX type code 0x{type_code:02X} is not supported; expected 0x08 "
            f"(unsigned byte, as in MNIST), got magic number 0x{magic:08X}"
        )
    if file_ndim == 0:
        raise CorruptFileError(
            f"{path}: corrupt header: magic number 0x{magic:08X} declares 0 dimensions; "
            "expected at least 1 (0x00000801 for labels, 0x00000803 for images)"
        )
    if ndim is not None and file_ndim != ndim:
        content = f" for {_IDX_CONTENT[ndim]}" if ndim in _IDX_CONTENT else ""
        guess = f" (a {_IDX_CONTENT[file_ndim]} file?)" if file_ndim in _IDX_CONTENT else ""
        raise CorruptFileError(
            f"{path}: expected IDX magic 0x{(_IDX_UBYTE << 8) | ndim:08X}{content} "
            f"({ndim} dimensions), got 0x{magic:08X} ({file_ndim} dimensions){guess}"
        )
    header_size = 4 + 4 * file_ndim
    if len(raw) < header_size:
        raise CorruptFileError(
            f"{path}: corrupt header: {file_ndim} dimensions need a {header_size}-byte header, "
            f"but the file has only {len(raw)} bytes"
        )
    shape = tuple(
        int.from_bytes(raw[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(file_ndim)
    )
    expected, found = int(np.prod(shape)), len(raw) - header_size
    if found < expected:
        raise CorruptFileError(
            f"{path}: truncated file: header says shape {shape} = {expected} data bytes, "
            f"found only {found}"
        )
    if found > expected:
        raise CorruptFileError(
            f"{path}: {found - expected} trailing bytes: header says shape {shape} = "
            f"{expected} data bytes, found {found}"
        )
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape).copy()


def load_mnist(
    root: str | os.PathLike | None = None,
    *,
    split: str = "train",
    variant: str = "mnist",
    download: bool = False,
) -> ArrayDataset:
    """MNIST or Fashion-MNIST from the IDX files in ``<root>/<variant>/``.

    Reads ``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte`` (``split="train"``,
    60,000 images) or ``t10k-images-idx3-ubyte`` + ``t10k-labels-idx1-ubyte``
    (``split="test"``, 10,000), each plain or gzipped (``.gz``).

    Args:
      root: base data folder; ``None`` uses ``$JAXNETS_DATA``, else ``~/.cache/jaxnets``.
      split: ``"train"`` or ``"test"``.
      variant: ``"mnist"`` (handwritten digits) or ``"fashion_mnist"`` (clothing, same format).
      download: fetch missing ``.gz`` files from :data:`jaxnets.data.files.SOURCES` and verify
        their SHA-256.

    Returns:
      ``x`` float32 (n, 28, 28, 1) in [0, 1] (raw byte / 255), ``y`` int32 (n,),
      ``num_classes=10``, ``image_shape=(28, 28, 1)``, name ``"<variant>-<split>"``.

    Raises:
      FileNotFoundError: files missing (and not downloaded); the message names them, the
        folder to put them in and their URLs.
      CorruptFileError: a malformed file, image/label counts that differ, a checksum mismatch.
    """
    check_choice("split", split, ("train", "test"))
    check_choice("variant", variant, ("mnist", "fashion_mnist"))
    source, folder = files.SOURCES[variant], files.data_folder(variant, root)
    names = files.idx_file_names(split)

    def locate(name: str) -> Path | None:
        return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)

    missing = [name for name in names if locate(name) is None]
    if missing:
        files.fetch_or_explain(
            source,
            folder,
            missing=[f"{name} (or {name}.gz)" for name in missing],
            downloads=[f"{name}.gz" for name in missing],
            download=download,
        )
    images_path, labels_path = (locate(name) for name in names)
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise CorruptFileError(
            f"{images_path}: expected 28x28 {source.title} images, got {images.shape[1:]}"
        )
    if len(images) != len(labels):
        raise CorruptFileError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; they must match one to one (mixed-up or partly downloaded files?)"
        )
    files.check_labels(labels, labels_path)
    return ArrayDataset(
        x=images[..., None].astype(np.float32) / 255,
        y=labels.astype(np.int32),
        name=f"{variant}-{split}",
        num_classes=10,
        image_shape=(28, 28, 1),
    )
