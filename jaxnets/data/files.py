"""Data set files on disk: MNIST / Fashion-MNIST (IDX) and CIFAR-10 (python pickles).

Lectures: seed 004, Lecture 10 "Image Classification" §2.1 USPS and MNIST (line 2331):
MNIST's 70,000 digits (60,000 train, 10,000 test) are centred in their image and normalised
to a standard size. CIFAR is the "smaller object recognition benchmark" of the ResNet
discussion (line 3294).

Files live in ``<root>/<data set>/`` (:func:`data_folder`: ``root=``, else ``$JAXNETS_DATA``,
else ``~/.cache/jaxnets``). ``download=True`` fetches missing files from :data:`SOURCES` and
checks their published SHA-256. :func:`read_idx` parses the IDX format; CIFAR-10 pickles are
read by an unpickler that only rebuilds numpy arrays, and their archive is extracted refusing
unsafe members. A malformed file raises :class:`CorruptFileError` naming the file, what was
expected and what was found. Images are float32 in [0, 1], channels-last
``(n, height, width, channels)``; labels int32.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from jaxnets.data.dataset import ArrayDataset

__all__ = [
    "CorruptFileError",
    "Source",
    "SOURCES",
    "DATA_ENV_VAR",
    "data_folder",
    "read_idx",
    "load_mnist",
    "load_cifar10",
]

DATA_ENV_VAR = "JAXNETS_DATA"


class CorruptFileError(ValueError):
    """A data file exists but is not what its format promises (or fails its checksum)."""


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a data set's files are published.

    Attributes:
      title: the data set's name in messages.
      base_url: URL prefix; a file's URL is ``base_url + file name``.
      sha256: file name -> published SHA-256 hex digest of the downloaded file.
    """

    title: str
    base_url: str
    sha256: Mapping[str, str]


# Published checksums, copied (not computed here: this machine is offline) from
#  * MNIST: tensorflow/datasets tensorflow_datasets/url_checksums/mnist.txt
#    (commit 31f1255e57e519a6c004f0b097a2f5cfcf0dde7d);
#  * Fashion-MNIST: tensorflow/datasets tensorflow_datasets/url_checksums/fashion_mnist.txt
#    (commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5);
#  * CIFAR-10 (python version): keras-team/keras keras/src/datasets/cifar10.py
#    (``file_hash``), identical to tensorflow/datasets url_checksums/cifar10.csv
#    (commit 2740d30f03c8f1f48f9665802e48a6bd4c8d156f).
# Tests replace entries (e.g. with a file:// URL) through this module-level dict.
SOURCES: dict[str, Source] = {
    "mnist": Source(
        "MNIST",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",  # noqa: E501
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",  # noqa: E501
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",  # noqa: E501
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",  # noqa: E501
        },
    ),
    "fashion_mnist": Source(
        "Fashion-MNIST",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",  # noqa: E501
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",  # noqa: E501
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",  # noqa: E501
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",  # noqa: E501
        },
    ),
    "cifar10": Source(
        "CIFAR-10",
        "https://www.cs.toronto.edu/~kriz/",
        {
            "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",  # noqa: E501
        },
    ),
}


def data_folder(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``dataset``'s files: ``<root>/<dataset>``.

    ``root`` is the argument, else ``$JAXNETS_DATA``, else ``~/.cache/jaxnets``.
    """
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or Path.home() / ".cache" / "jaxnets"
    return Path(root).expanduser() / dataset


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------

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
      download: fetch missing ``.gz`` files from :data:`SOURCES` and verify their SHA-256.

    Returns:
      ``x`` float32 (n, 28, 28, 1) in [0, 1] (raw byte / 255), ``y`` int32 (n,),
      ``num_classes=10``, ``image_shape=(28, 28, 1)``, name ``"<variant>-<split>"``.

    Raises:
      FileNotFoundError: files missing (and not downloaded); the message names them, the
        folder to put them in and their URLs.
      CorruptFileError: a malformed file, image/label counts that differ, a checksum mismatch.
    """
    _check_choice("split", split, ("train", "test"))
    _check_choice("variant", variant, ("mnist", "fashion_mnist"))
    source, folder = SOURCES[variant], data_folder(variant, root)
    prefix = "train" if split == "train" else "t10k"
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")

    def locate(name: str) -> Path | None:
        return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)

    missing = [name for name in names if locate(name) is None]
    if missing:
        _fetch_or_explain(
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
    _check_labels(labels, labels_path)
    return ArrayDataset(
        x=images[..., None].astype(np.float32) / 255,
        y=labels.astype(np.int32),
        name=f"{variant}-{split}",
        num_classes=10,
        image_shape=(28, 28, 1),
    )


# --- CIFAR-10 python pickles ---------------------------------------------------------------

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
    _check_labels(labels, path)
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
      download: fetch the archive from :data:`SOURCES` and verify its SHA-256.

    Returns:
      ``x`` float32 (n, 32, 32, 3) in [0, 1] (byte / 255), ``y`` int32 (n,),
      ``num_classes=10``, ``image_shape=(32, 32, 3)``, name ``"cifar10-<split>"``.

    Raises:
      FileNotFoundError: neither the batch files nor the archive are there (and not
        downloaded); the message names the folder and the URL.
      CorruptFileError: a malformed pickle or archive, or a checksum mismatch.
    """
    _check_choice("split", split, ("train", "test"))
    source, folder = SOURCES["cifar10"], data_folder("cifar10", root)
    batches = folder / _CIFAR_FOLDER
    names = _CIFAR_BATCHES[split]

    def missing() -> list[str]:
        return [name for name in names if not (batches / name).is_file()]

    if missing():
        if not (folder / _CIFAR_ARCHIVE).is_file():
            _fetch_or_explain(
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


# --- shared helpers ------------------------------------------------------------------------


def _check_choice(argument: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {list(choices)}; got {value!r}")


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise CorruptFileError(
            f"{path}: labels should be classes 0-9, found range [{labels.min()}, {labels.max()}]"
        )


def _download(url: str, destination: Path, sha256: str) -> None:
    """Fetch ``url`` to ``destination``, keeping it only if its SHA-256 matches."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != sha256:
        partial.unlink()
        raise CorruptFileError(
            f"{url}: downloaded file has SHA-256 {digest.hexdigest()}, expected the published "
            f"{sha256}; it was deleted, not saved as {destination} (try again, or fetch it "
            "by hand)"
        )
    partial.replace(destination)


def _fetch_or_explain(
    source: Source,
    folder: Path,
    *,
    missing: Sequence[str],
    downloads: Sequence[str],
    download: bool,
    note: str = "",
) -> None:
    """Download ``downloads`` into ``folder``, or raise FileNotFoundError saying how to."""
    urls = [source.base_url + name for name in downloads]
    reason, cause = "download=False", None
    if download:
        try:
            for name, url in zip(downloads, urls, strict=True):
                _download(url, folder / name, source.sha256[name])
            return
        except OSError as err:  # offline, DNS, HTTP errors (URLError is an OSError)
            reason, cause = f"downloading failed: {err}", err
    raise FileNotFoundError(
        f"{source.title} files missing ({reason}): {', '.join(missing)}{note}. Put them in "
        f"{folder} (download from {', '.join(urls)}), or call with download=True. The folder "
        f"is <root>/{folder.name}, where root is the root= argument, else ${DATA_ENV_VAR}, "
        "else ~/.cache/jaxnets."
    ) from cause
