"""CIFAR-10 from its python-pickle files.

Lectures: seed 004, Lecture 10 "Image Classification": CIFAR is the "smaller object
recognition benchmark" of the ResNet discussion (line 3294).

:func:`load_cifar10` reads ``<root>/cifar10/`` (:func:`jaxnets.data.files.data_folder`),
downloading the archive with a checksum when asked. The pickles are read by an unpickler that
only rebuilds numpy arrays, and the archive is extracted refusing unsafe members. Images are
float32 in [0, 1], channels-last ``(n, 32, 32, 3)``; labels int32.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from jaxnets.checks import check_choice
from jaxnets.data import files
from jaxnets.data.dataset import ArrayDataset
from jaxnets.data.files import CorruptFileError

__all__ = ["load_cifar10"]

_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
# The published files were pickled by Python 2 with numpy 1 (``numpy.core``); numpy 2
# renamed the module to ``numpy._core``. Ask numpy for its array reconstructor rather than
# importing a private module whose path depends on the numpy version.
_reconstruct = np.ndarray((0,), np.uint8).__reduce__()[0]
_frombuffer = np.ndarray((0,), np.uint8).__reduce_ex__(5)[0]  # pickle protocol 5's arrays


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """What Python 3's pickle protocols 0-2 call to rebuild a ``bytes`` object (they have no
    bytes opcode): ``_codecs.encode(text, "latin1")``. Nothing else is allowed through."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(
            f"forbidden call _codecs.encode({type(text).__name__}, {encoding!r}); only the "
            "latin-1 encoding of bytes written by pickle protocols 0-2 is allowed"
        )
    return text.encode("latin1")


_PICKLE_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global: a
    pickle can name any importable callable and call it (run code) while it loads."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name}; a CIFAR-10 batch only needs numpy arrays"
            )
        return _PICKLE_GLOBALS[module, name]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images (n, 32, 32, 3) uint8, labels (n,))."""
    try:
        with open(path, "rb") as stream:
            batch = _ArrayOnlyUnpickler(stream, encoding="bytes").load()
    # Arbitrary bytes make the unpickler fail in many ways (UnpicklingError, EOFError,
    # ValueError, TypeError, ...); no code can run (see _ArrayOnlyUnpickler), so any
    # failure just means the file is not a valid batch.
    except Exception as err:
        raise CorruptFileError(
            f"{path}: not a valid CIFAR-10 python batch: unpickling failed with "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        found = sorted(batch, key=repr) if isinstance(batch, dict) else type(batch).__name__
        raise CorruptFileError(
            f"{path}: expected a dict with keys b'data' and b'labels' (a CIFAR-10 python "
            f"batch), found {found}"
        )
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2) or (
        data.shape[1] != 3 * 32 * 32
    ):
        found = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise CorruptFileError(
            f"{path}: b'data' should be a uint8 array (n, 3072), a row holding the 1024 red, "
            f"1024 green and 1024 blue values of a 32x32 image; found {found}"
        )
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise CorruptFileError(
            f"{path}: b'labels' should be {len(data)} integers (one per image), found "
            f"{labels.dtype} array of shape {labels.shape}"
        )
    files.check_labels(labels, path)
    # A row is the red plane, then green, then blue, each row-major 32x32.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _extract_tar(archive: Path, destination: Path) -> None:
    """Extract regular files and folders, refusing absolute paths, ``..`` and links."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise CorruptFileError(
                        f"{archive}: unsafe member path {member.name!r}; expected paths "
                        f"inside the archive such as '{_CIFAR_FOLDER}/data_batch_1'"
                    )
                target = destination.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                else:
                    raise CorruptFileError(
                        f"{archive}: member {member.name!r} is a link or special file; "
                        "expected only regular files and folders"
                    )
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise CorruptFileError(
            f"{archive}: not a valid .tar.gz archive ({err}); delete it and download it again"
        ) from err


def load_cifar10(
    root: str | os.PathLike | None = None, *, split: str = "train", download: bool = False
) -> ArrayDataset:
    """CIFAR-10 from the python-pickle version in ``<root>/cifar10/cifar-10-batches-py/``.

    The folder holds ``data_batch_1`` ... ``data_batch_5`` (training, 10,000 images each)
    and ``test_batch``, each a pickled dict with ``b"data"`` (n, 3072) uint8 (a row is the
    1024 red, 1024 green, then 1024 blue values of a 32x32 image) and ``b"labels"``. A
    pickle can run arbitrary code while it loads, so they are read with an unpickler that
    only reconstructs numpy arrays and refuses every other global. When the folder is
    missing but ``<root>/cifar10/cifar-10-python.tar.gz`` is present (or downloaded), the
    archive is extracted first, refusing absolute paths, ``..`` and links.

    Args:
      root: base data folder; ``None`` uses ``$JAXNETS_DATA``, else ``~/.cache/jaxnets``.
      split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
      download: fetch the archive from :data:`jaxnets.data.files.SOURCES` and verify its SHA-256.

    Returns:
      ``x`` float32 (n, 32, 32, 3) in [0, 1] (byte / 255), ``y`` int32 (n,),
      ``num_classes=10``, ``image_shape=(32, 32, 3)``, name ``"cifar10-<split>"``.

    Raises:
      FileNotFoundError: neither the batch files nor the archive are there (and not
        downloaded); the message names the folder and the URL.
      CorruptFileError: a malformed pickle or archive, or a checksum mismatch.
    """
    check_choice("split", split, ("train", "test"))
    source, folder = files.SOURCES["cifar10"], files.data_folder("cifar10", root)
    batches = folder / _CIFAR_FOLDER
    names = _CIFAR_BATCHES[split]

    def missing() -> list[str]:
        return [name for name in names if not (batches / name).is_file()]

    if missing():
        if not (folder / _CIFAR_ARCHIVE).is_file():
            files.fetch_or_explain(
                source,
                folder,
                missing=[f"{_CIFAR_FOLDER}/{name}" for name in missing()],
                downloads=[_CIFAR_ARCHIVE],
                download=download,
                note=f" (or the archive {_CIFAR_ARCHIVE}, extracted on first use)",
            )
        _extract_tar(folder / _CIFAR_ARCHIVE, folder)
        if missing():
            raise CorruptFileError(
                f"{folder / _CIFAR_ARCHIVE}: the archive lacks "
                f"{', '.join(f'{_CIFAR_FOLDER}/{name}' for name in missing())}"
            )
    images, labels = zip(*(_read_cifar_batch(batches / name) for name in names), strict=True)
    return ArrayDataset(
        x=np.concatenate(images).astype(np.float32) / 255,
        y=np.concatenate(labels).astype(np.int32),
        name=f"cifar10-{split}",
        num_classes=10,
        image_shape=(32, 32, 3),
    )
