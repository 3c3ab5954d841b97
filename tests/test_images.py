"""Tests of jaxnets.data.images (digits at 32x32), jaxnets.data.idx and jaxnets.data.cifar
(the IDX (MNIST) and CIFAR-10 pickle loaders) and jaxnets.data.files (where files are looked
for, checksummed downloads), with every kind of corrupt file."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jaxnets.data import (
    CorruptFileError,
    digits_to_32x32,
    files,
    load_cifar10,
    load_digits,
    load_digits_32,
    load_mnist,
    read_idx,
)

# --- digits at 32x32 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits32():
    return load_digits().x.reshape(-1, 8, 8), load_digits_32()


def test_digits_to_32x32_border_alignment_and_mean_ink(digits32):
    digits8, dataset = digits32
    x = dataset.x
    assert x.shape == (1797, 32, 32, 1) and x.dtype == np.float32
    border = np.ones((32, 32), bool)
    border[4:28, 4:28] = False
    assert np.all(x[:, border, 0] == 0)
    centre = x[:, 4:28, 4:28, 0]
    # Output pixel 3r+1 of the 24x24 image sits exactly on input pixel r ...
    np.testing.assert_allclose(centre[:, 1::3, 1::3], digits8, atol=1e-6)
    # ... and pixel 3r+2 a third of the way to pixel r+1: bilinear, not nearest-neighbour.
    np.testing.assert_allclose(
        centre[:, 2, 1::3], (2 * digits8[:, 0] + digits8[:, 1]) / 3, atol=1e-6
    )
    mean_ink_8, mean_ink_24 = digits8.mean(axis=(1, 2)), centre.mean(axis=(1, 2))
    assert np.max(np.abs(mean_ink_24 - mean_ink_8)) < 1e-5
    # The blank border dilutes the ink to (24/32)^2 = 9/16 of the 8x8 mean (0.3053 on average).
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 9 / 16 * mean_ink_8, atol=1e-6)
    assert abs(float(x.mean()) - 0.1717) < 1e-4
    assert 0 <= x.min() and x.max() <= 1


def test_load_digits_32_metadata_and_split(digits32):
    _, dataset = digits32
    assert (dataset.name, dataset.num_classes, dataset.image_shape) == ("digits32", 10, (32, 32, 1))
    np.testing.assert_array_equal(dataset.y, load_digits().y)
    splits = dataset.split((0.6, 0.2, 0.2), seed=0)
    assert [part.x.shape for part in splits] == [
        (1078, 32, 32, 1),
        (360, 32, 32, 1),
        (359, 32, 32, 1),
    ]
    rows = {part.x[i].tobytes() for part in splits for i in range(len(part))}
    assert len(rows) == len({row.tobytes() for row in dataset.x})  # a partition of the images
    assert splits.train.image_shape == (32, 32, 1)


def test_digits_to_32x32_rejects_other_shapes():
    with pytest.raises(ValueError, match=r"shape \(n, 64\); got \(3, 8, 8\)"):
        digits_to_32x32(np.zeros((3, 8, 8)))


# --- IDX files -----------------------------------------------------------------------------

IMAGES = (np.arange(3 * 28 * 28) * 7 % 256).astype(np.uint8).reshape(3, 28, 28)
LABELS = np.array([7, 0, 9], np.uint8)


def _idx(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    return header + array.tobytes()


def _write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _write_mnist(folder: Path, prefix: str = "train", suffix: str = ".gz", labels=LABELS):
    _write(folder / f"{prefix}-images-idx3-ubyte{suffix}", _idx(IMAGES))
    _write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", _idx(labels))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_plain_and_gzipped(tmp_path, suffix):
    images = read_idx(_write(tmp_path / f"images{suffix}", _idx(IMAGES)), ndim=3)
    labels = read_idx(_write(tmp_path / f"labels{suffix}", _idx(LABELS)))
    assert images.dtype == np.uint8 and images.shape == (3, 28, 28)
    np.testing.assert_array_equal(images, IMAGES)
    np.testing.assert_array_equal(labels, [7, 0, 9])
    images[0, 0, 0] = 1  # a writable array, not a view of the file's bytes


def test_load_mnist_scales_pixels_and_keeps_labels(tmp_path):
    _write_mnist(tmp_path / "mnist")
    dataset = load_mnist(tmp_path)
    assert dataset.x.shape == (3, 28, 28, 1) and dataset.x.dtype == np.float32
    assert dataset.y.dtype == np.int32
    np.testing.assert_array_equal(dataset.y, [7, 0, 9])
    assert IMAGES[1, 2, 3] == 13 and dataset.x[1, 2, 3, 0] == np.float32(13) / 255
    np.testing.assert_array_equal(np.rint(dataset.x[..., 0] * 255), IMAGES)
    assert (dataset.name, dataset.num_classes, dataset.image_shape) == (
        "mnist-train",
        10,
        (28, 28, 1),
    )


def test_load_fashion_mnist_test_split_from_plain_files(tmp_path):
    _write_mnist(tmp_path / "fashion_mnist", prefix="t10k", suffix="")
    dataset = load_mnist(tmp_path, split="test", variant="fashion_mnist")
    assert dataset.name == "fashion_mnist-test"
    np.testing.assert_array_equal(np.rint(dataset.x[..., 0] * 255), IMAGES)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, split="train", variant="fashion_mnist")


def _header(ndim: int, *sizes: int, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, ndim]) + b"".join(s.to_bytes(4, "big") for s in sizes)


CORRUPT_IDX = {
    "bad_magic": (
        b"\x12\x34\x08\x03" + _idx(IMAGES)[4:],
        r"not an IDX file: magic number 0x12340803",
    ),
    "gzip_without_suffix": (gzip.compress(_idx(IMAGES)), r"gzip data: name the file \*\.gz"),
    "labels_for_images": (
        _idx(LABELS),
        r"expected IDX magic 0x00000803 for images \(3 dimensions\), "
        r"got 0x00000801 \(1 dimensions\) \(a labels file\?\)",
    ),
    "float_type": (_idx(IMAGES, type_code=0x0D), r"type code 0x0D is not supported; expected 0x08"),
    "zero_dims": (b"\x00\x00\x08\x00", r"declares 0 dimensions"),
    "too_short": (b"\x00\x00", r"corrupt header: the file has 2 bytes"),
    "header_cut": (
        _header(3, 3, 28),
        r"corrupt header: 3 dimensions need a 16-byte header, "
        r"but the file has only 12 bytes",
    ),
    "truncated": (
        _idx(IMAGES)[:-352],
        r"truncated file: header says shape \(3, 28, 28\) = "
        r"2352 data bytes, found only 2000",
    ),
    "trailing": (_idx(IMAGES) + b"\x00" * 5, r"5 trailing bytes"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_IDX))
def test_read_idx_names_the_file_and_the_problem(tmp_path, case):
    data, message = CORRUPT_IDX[case]
    path = _write(tmp_path / "train-images-idx3-ubyte", data)
    with pytest.raises(CorruptFileError, match=message) as info:
        read_idx(path, ndim=3)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("damage", ["garbage", "cut_stream"])
def test_bad_gzip_is_a_corrupt_file(tmp_path, damage):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    compressed = gzip.compress(_idx(IMAGES))
    path.write_bytes(b"not gzip at all" if damage == "garbage" else compressed[:-20])
    with pytest.raises(CorruptFileError, match=r"not a valid gzip file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_load_mnist_checks_counts_labels_and_image_size(tmp_path):
    folder = tmp_path / "mnist"
    _write_mnist(folder, labels=np.array([1, 2], np.uint8))
    with pytest.raises(
        CorruptFileError, match=r"holds 3 images but .*labels-idx1-ubyte.gz holds 2"
    ):
        load_mnist(tmp_path)
    _write_mnist(folder, labels=np.array([1, 2, 12], np.uint8))
    with pytest.raises(CorruptFileError, match=r"classes 0-9, found range \[1, 12\]"):
        load_mnist(tmp_path)
    _write(folder / "train-images-idx3-ubyte.gz", _idx(np.zeros((3, 8, 8), np.uint8)))
    with pytest.raises(CorruptFileError, match=r"expected 28x28 MNIST images, got \(8, 8\)"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split must be one of train, test; got 'val'"):
        load_mnist(tmp_path, split="val")


def test_missing_mnist_files_say_where_to_put_them(tmp_path):
    folder = tmp_path / "mnist"
    _write(folder / "train-images-idx3-ubyte", _idx(IMAGES))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte (or train-labels-idx1-ubyte.gz)" in message
    assert "train-images" not in message  # present, so not reported
    assert f"Put them in {folder} " in message
    assert (
        "https://storage.googleapis.com/cvdf-datasets/mnist/train-labels-idx1-ubyte.gz" in message
    )
    assert "$JAXNETS_DATA" in message and "download=True" in message


def test_data_root_from_environment_then_home(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "env" / "mnist")
    monkeypatch.setenv("JAXNETS_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(load_mnist().y, [7, 0, 9])
    monkeypatch.delenv("JAXNETS_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST files missing") as info:
        load_mnist(variant="fashion_mnist")
    assert str(tmp_path / "home" / ".cache" / "jaxnets" / "fashion_mnist") in str(info.value)
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" in str(info.value)


def _serve(monkeypatch, dataset: str, published: dict[str, bytes], server: Path, bad: str = ""):
    """Publish the ``published`` files under a file:// URL, with true checksums except ``bad``."""
    for name, data in published.items():
        _write(server / name, data)
    checksums = {
        name: "0" * 64 if name == bad else hashlib.sha256((server / name).read_bytes()).hexdigest()
        for name in published
    }
    source = files.Source(dataset, server.as_uri() + "/", checksums)
    monkeypatch.setitem(files.SOURCES, dataset, source)


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    published = {
        "train-images-idx3-ubyte.gz": _idx(IMAGES),
        "train-labels-idx1-ubyte.gz": _idx(LABELS),
    }
    _serve(monkeypatch, "mnist", published, tmp_path / "server")
    dataset = load_mnist(tmp_path / "data", download=True)
    np.testing.assert_array_equal(np.rint(dataset.x[..., 0] * 255), IMAGES)
    assert sorted(os.listdir(tmp_path / "data" / "mnist")) == sorted(published)

    _serve(monkeypatch, "mnist", published, tmp_path / "server", bad="train-images-idx3-ubyte.gz")
    with pytest.raises(
        CorruptFileError, match=r"SHA-256 [0-9a-f]{64}, expected the published 0{64}"
    ):
        load_mnist(tmp_path / "other", download=True)
    assert os.listdir(tmp_path / "other" / "mnist") == []  # deleted, no .part left behind


def test_failed_download_is_file_not_found_with_the_reason(tmp_path, monkeypatch):
    offline = dataclasses.replace(
        files.SOURCES["mnist"], base_url=(tmp_path / "nowhere").as_uri() + "/"
    )
    monkeypatch.setitem(files.SOURCES, "mnist", offline)
    with pytest.raises(FileNotFoundError, match="downloading failed") as info:
        load_mnist(tmp_path, split="test", download=True)
    assert (tmp_path / "nowhere" / "t10k-images-idx3-ubyte.gz").as_uri() in str(info.value)


# --- CIFAR-10 ------------------------------------------------------------------------------


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
    """An uncompressed tar of ``members`` (``_write`` gzips it into a .tar.gz)."""
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
        _write(tmp_path / "cifar10" / name, data)
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
    path = _write(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", data)
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
    _write(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", payload)
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
    _write(
        tmp_path / "local" / "cifar10" / "cifar-10-python.tar.gz", archive["cifar-10-python.tar.gz"]
    )
    np.testing.assert_array_equal(
        load_cifar10(tmp_path / "local", split="test").y, batches["test_batch"][1]
    )
    _serve(monkeypatch, "cifar10", archive, tmp_path / "server")
    train = load_cifar10(tmp_path / "fetched", download=True)
    np.testing.assert_array_equal(
        np.rint(train.x[:5] * 255), _expected_images(batches["data_batch_1"][0])
    )
    _serve(monkeypatch, "cifar10", archive, tmp_path / "server", bad="cifar-10-python.tar.gz")
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
    _write(folder / "cifar-10-python.tar.gz", buffer.getvalue())
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
