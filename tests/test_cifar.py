"""Tests of jaxnets.data.cifar, the CIFAR-10 loader: the published Python 2 pickles and
numpy 2 ones, every kind of corrupt batch, an unpickler that runs no code, and the archive,
extracted by hand or downloaded with its checksum, whose unsafe or corrupt members are refused."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_file_helpers import serve_files, write_file

from jaxnets.data import (
    CorruptFileError,
    load_cifar10,
)


def _python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch the way the published files were written: Python 2 cPickle, protocol 2,
    numpy 1 (byte strings, ``numpy.core.multiarray._reconstruct``).

    Opcodes: ``c`` GLOBAL, ``T`` BINSTRING, ``J`` BININT, ``(`` MARK, ``t`` TUPLE,
    ``\x85``-``\x87`` TUPLE1-3, ``R`` REDUCE, ``b`` BUILD, ``\x89`` NEWFALSE, ``N`` NONE,
    ``]`` EMPTY_LIST + ``e`` APPENDS, ``}`` EMPTY_DICT + ``u`` SETITEMS, ``.`` STOP.
    """

    def string(value: bytes) -> bytes:
        return b"T" + struct.pack("<I", len(value)) + value

    def integer(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + integer(0) + b"\x85" + string(b"b") + b"\x87R("
        + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86"
        + b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R("
        + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb"
        + b"\x89" + string(data.tobytes()) + b"tb"
    )  # fmt: skip
    label_list = b"](" + b"".join(integer(label) for label in labels) + b"e"
    return (
        b"\x80\x02}(" + string(b"batch_label") + string(b"training batch 1 of 5")
        + string(b"data") + array + string(b"labels") + label_list + b"u."
    )  # fmt: skip


def _cifar_batches(seed: int) -> dict[str, tuple[np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (rng.integers(0, 256, (5, 3072), dtype=np.uint8), rng.integers(0, 10, 5).tolist())
        for name in names
    }


def _cifar_files(batches) -> dict[str, bytes]:
    """Training batches in the published Python 2 format, the test batch as numpy 2 writes."""
    return {
        f"cifar-10-batches-py/{name}": (
            pickle.dumps({b"data": data, b"labels": labels}, protocol=4)
            if name == "test_batch"
            else _python2_pickle(data, labels)
        )
        for name, (data, labels) in batches.items()
    }


def _tar(members: dict[str, bytes]) -> bytes:
    """An uncompressed tar of ``members`` (``write_file`` gzips it into a .tar.gz)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _expected_images(data: np.ndarray) -> np.ndarray:
    """(n, 3072) rows of 1024 red, 1024 green, 1024 blue -> (n, 32, 32, 3), pixel by pixel."""
    out = np.zeros((len(data), 32, 32, 3), np.uint8)
    for n, row, col, channel in np.ndindex(out.shape):
        out[n, row, col, channel] = data[n, channel * 1024 + row * 32 + col]
    return out


def test_load_cifar10_reads_python2_and_numpy2_pickles(tmp_path):
    batches = _cifar_batches(seed=0)
    for name, data in _cifar_files(batches).items():
        write_file(tmp_path / "cifar10" / name, data)
    train = load_cifar10(tmp_path)
    assert train.x.shape == (25, 32, 32, 3) and train.x.dtype == np.float32
    assert (train.name, train.num_classes, train.image_shape) == ("cifar10-train", 10, (32, 32, 3))
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(np.rint(train.x * 255), _expected_images(train_data))
    np.testing.assert_array_equal(
        train.x[2, 0, 1], train_data[2, [1, 1025, 2049]].astype(np.float32) / 255
    )
    np.testing.assert_array_equal(
        train.y, sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    )
    test = load_cifar10(tmp_path, split="test")
    np.testing.assert_array_equal(np.rint(test.x * 255), _expected_images(batches["test_batch"][0]))
    np.testing.assert_array_equal(test.y, batches["test_batch"][1])


def _bad_batches() -> dict[str, tuple[bytes, str]]:
    data = np.zeros((5, 3072), np.uint8)
    good = pickle.dumps({b"data": data, b"labels": [0] * 5}, protocol=4)
    return {
        "truncated": (good[: len(good) // 2], r"not a valid CIFAR-10 python batch: unpickling"),
        "garbage": (b"\x00garbage", r"not a valid CIFAR-10 python batch"),
        "wrong_keys": (
            pickle.dumps({b"images": data, b"labels": [0] * 5}, protocol=4),
            r"expected a dict with keys b'data' and b'labels' .*found \[b'images', b'labels'\]",
        ),
        "not_a_dict": (pickle.dumps([1, 2], protocol=4), r"keys b'data' .* found list"),
        "row_length": (
            pickle.dumps({b"data": data[:, :3000], b"labels": [0] * 5}, protocol=4),
            r"b'data' should be a uint8 array \(n, 3072\), .*; found uint8 .* \(5, 3000\)",
        ),
        "dtype": (
            pickle.dumps({b"data": data.astype(np.float32), b"labels": [0] * 5}, protocol=4),
            r"b'data' should be a uint8 array \(n, 3072\), .*; found float32 array",
        ),
        "label_count": (
            pickle.dumps({b"data": data, b"labels": [0] * 4}, protocol=4),
            r"b'labels' should be 5 integers \(one per image\), found int64 array of shape \(4,\)",
        ),
        "label_range": (
            pickle.dumps({b"data": data, b"labels": [0, 1, 2, 3, 10]}, protocol=4),
            r"classes 0-9, found range \[0, 10\]",
        ),
    }


@pytest.mark.parametrize("case", sorted(_bad_batches()))
def test_corrupt_cifar_batch_names_the_file(tmp_path, case):
    data, message = _bad_batches()[case]
    path = write_file(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", data)
    with pytest.raises(CorruptFileError, match=message) as info:
        load_cifar10(tmp_path, split="test")
    assert str(path) in str(info.value)


class _MakeDirectory:
    """Unpickling this with the standard unpickler would call os.mkdir(path)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_cifar_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "was_run"
    payload = pickle.dumps({b"data": _MakeDirectory(marker), b"labels": []}, protocol=4)
    write_file(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", payload)
    with pytest.raises(CorruptFileError, match=r"forbidden global (posix|os)\.mkdir"):
        load_cifar10(tmp_path, split="test")
    assert not marker.exists()


def test_missing_cifar_says_folder_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path, split="test")
    message = str(info.value)
    assert "cifar-10-batches-py/test_batch" in message and "data_batch_1" not in message
    assert f"Put them in {tmp_path / 'cifar10'} " in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


def test_cifar_archive_is_extracted_or_downloaded_with_checksum(tmp_path, monkeypatch):
    batches = _cifar_batches(seed=1)
    archive = {"cifar-10-python.tar.gz": _tar(_cifar_files(batches))}
    # An archive placed by hand is extracted on first use, no download needed.
    write_file(
        tmp_path / "local" / "cifar10" / "cifar-10-python.tar.gz", archive["cifar-10-python.tar.gz"]
    )
    np.testing.assert_array_equal(
        load_cifar10(tmp_path / "local", split="test").y, batches["test_batch"][1]
    )
    serve_files(monkeypatch, "cifar10", archive, tmp_path / "server")
    train = load_cifar10(tmp_path / "fetched", download=True)
    np.testing.assert_array_equal(
        np.rint(train.x[:5] * 255), _expected_images(batches["data_batch_1"][0])
    )
    serve_files(monkeypatch, "cifar10", archive, tmp_path / "server", bad="cifar-10-python.tar.gz")
    with pytest.raises(CorruptFileError, match="expected the published 0{64}"):
        load_cifar10(tmp_path / "refused", download=True)
    assert os.listdir(tmp_path / "refused" / "cifar10") == []


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../escaped", r"unsafe member path '\.\./escaped'"),
        ("/tmp/absolute", r"unsafe member path '/tmp/absolute'"),
        ("link", r"member 'link' is a link or special file"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, member, message):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(member)
        if member == "link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info, io.BytesIO(b""))
    folder = tmp_path / "root" / "cifar10"
    write_file(folder / "cifar-10-python.tar.gz", buffer.getvalue())
    with pytest.raises(CorruptFileError, match=message):
        load_cifar10(tmp_path / "root")
    assert not (tmp_path / "root" / "escaped").exists() and not (folder / "link").exists()


def test_corrupt_archive_is_reported(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(CorruptFileError, match=r"not a valid \.tar\.gz archive") as info:
        load_cifar10(tmp_path)
    assert str(folder / "cifar-10-python.tar.gz") in str(info.value)
