"""Writing and publishing data files, shared by the loader tests (test_images.py, test_cifar.py)."""

import gzip
import hashlib
from pathlib import Path

import pytest

from jaxnets.data import files


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def serve_files(
    monkeypatch: pytest.MonkeyPatch,
    dataset: str,
    published: dict[str, bytes],
    server: Path,
    bad: str = "",
) -> None:
    """Publish the ``published`` files (name -> bytes) in the folder ``server`` as ``dataset``'s
    download source, a file:// URL, with true SHA-256 checksums except for the file ``bad``."""
    for name, data in published.items():
        write_file(server / name, data)
    checksums = {
        name: "0" * 64 if name == bad else hashlib.sha256((server / name).read_bytes()).hexdigest()
        for name in published
    }
    source = files.Source(dataset, server.as_uri() + "/", checksums)
    monkeypatch.setitem(files.SOURCES, dataset, source)
