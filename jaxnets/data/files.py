"""Data set files on disk: where they live, where they are published, checksummed downloads.

Lectures: seed 004, Lecture 10 "Image Classification" §2.1 USPS and MNIST (line 2331):
MNIST's 70,000 digits (60,000 train, 10,000 test) are centred in their image and normalised
to a standard size. CIFAR is the "smaller object recognition benchmark" of the ResNet
discussion (line 3294).

Files live in ``<root>/<data set>/`` (:func:`data_folder`: ``root=``, else ``$JAXNETS_DATA``,
else ``~/.cache/jaxnets``). ``download=True`` fetches missing files from :data:`SOURCES` and
checks their published SHA-256 (:func:`fetch_or_explain`). The readers of each format live in
:mod:`jaxnets.data.idx` (MNIST, Fashion-MNIST) and :mod:`jaxnets.data.cifar` (CIFAR-10
pickles); a malformed file raises :class:`CorruptFileError` naming the file, what was expected
and what was found.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_ENV_VAR",
    "SOURCES",
    "CorruptFileError",
    "Source",
    "check_labels",
    "data_folder",
    "fetch_or_explain",
    "idx_file_names",
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


def idx_file_names(split: str) -> tuple[str, str]:
    """The (images, labels) IDX file names of an MNIST-format ``split`` ("train" or "test"),
    without the ``.gz`` of their published, gzipped form: e.g. ``t10k-images-idx3-ubyte``."""
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _idx_source(title: str, base_url: str, train: tuple[str, str], test: tuple[str, str]) -> Source:
    """An MNIST-format data set's Source: ``train`` and ``test`` hold the published SHA-256 of
    the split's gzipped (images, labels) files."""
    names = (*idx_file_names("train"), *idx_file_names("test"))
    digests = (*train, *test)
    return Source(title, base_url, {f"{n}.gz": d for n, d in zip(names, digests, strict=True)})


# Published checksums, copied (not computed here: this machine is offline) from
#  * CIFAR-10 (python version): keras-team/keras keras/src/datasets/cifar10.py
#    (``file_hash``), identical to tensorflow/datasets url_checksums/cifar10.csv
#    (commit 2740d30f03c8f1f48f9665802e48a6bd4c8d156f);
#  * MNIST: tensorflow/datasets tensorflow_datasets/url_checksums/mnist.txt
#    (commit 31f1255e57e519a6c004f0b097a2f5cfcf0dde7d);
#  * Fashion-MNIST: tensorflow/datasets tensorflow_datasets/url_checksums/fashion_mnist.txt
#    (commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5).
# Tests replace entries (e.g. with a file:// URL) through this module-level dict.
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        "CIFAR-10",
        "https://www.cs.toronto.edu/~kriz/",
        {
            "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",  # noqa: E501
        },
    ),
    "mnist": _idx_source(
        "MNIST",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        train=(
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        test=(
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
    "fashion_mnist": _idx_source(
        "Fashion-MNIST",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        train=(
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        test=(
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    ),
}


def data_folder(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``dataset``'s files: ``<root>/<dataset>``.

    ``root`` is the argument, else ``$JAXNETS_DATA``, else ``~/.cache/jaxnets``.
    """
    if root is None:
        root = os.environ.get(DATA_ENV_VAR) or Path.home() / ".cache" / "jaxnets"
    return Path(root).expanduser() / dataset


def check_labels(labels: np.ndarray, path: Path) -> None:
    """Raise CorruptFileError naming ``path`` unless ``labels`` (n,) are classes 0-9."""
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


def fetch_or_explain(
    source: Source,
    folder: Path,
    *,
    missing: Sequence[str],
    downloads: Sequence[str],
    download: bool,
    note: str = "",
) -> None:
    """Download ``downloads`` into ``folder``, or raise FileNotFoundError saying how to.

    Args:
      source: where the files are published (URL prefix, checksums, title for messages).
      folder: the data set's folder (:func:`data_folder`).
      missing: the files the loader looked for and did not find, as the message names them.
      downloads: the published file names that provide them (keys of ``source.sha256``).
      download: try to fetch them; ``False`` only explains.
      note: appended to the list of missing files in the message.

    Raises:
      FileNotFoundError: ``download`` is false or fetching failed (offline, HTTP error); the
        message names the files, the folder and the URLs.
      CorruptFileError: a fetched file's SHA-256 differs from the published one.
    """
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
