"""Tests of jaxnets.data.images (digits at 32x32), jaxnets.data.idx (the IDX (MNIST) loader)
and jaxnets.data.files (where files are looked for, checksummed downloads), with every kind of
corrupt IDX file. The CIFAR-10 loader is in test_cifar.py."""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from data_file_helpers import serve_files, write_file

from jaxnets.data import (
    CorruptFileError,
    digits_to_32x32,
    files,
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


def _write_mnist(folder: Path, prefix: str = "train", suffix: str = ".gz", labels=LABELS):
    write_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", _idx(IMAGES))
    write_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", _idx(labels))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_plain_and_gzipped(tmp_path, suffix):
    images = read_idx(write_file(tmp_path / f"images{suffix}", _idx(IMAGES)), ndim=3)
    labels = read_idx(write_file(tmp_path / f"labels{suffix}", _idx(LABELS)))
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
    path = write_file(tmp_path / "train-images-idx3-ubyte", data)
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
    write_file(folder / "train-images-idx3-ubyte.gz", _idx(np.zeros((3, 8, 8), np.uint8)))
    with pytest.raises(CorruptFileError, match=r"expected 28x28 MNIST images, got \(8, 8\)"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split must be one of train, test; got 'val'"):
        load_mnist(tmp_path, split="val")


def test_missing_mnist_files_say_where_to_put_them(tmp_path):
    folder = tmp_path / "mnist"
    write_file(folder / "train-images-idx3-ubyte", _idx(IMAGES))
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


def test_download_verifies_the_checksum(tmp_path, monkeypatch):
    published = {
        "train-images-idx3-ubyte.gz": _idx(IMAGES),
        "train-labels-idx1-ubyte.gz": _idx(LABELS),
    }
    serve_files(monkeypatch, "mnist", published, tmp_path / "server")
    dataset = load_mnist(tmp_path / "data", download=True)
    np.testing.assert_array_equal(np.rint(dataset.x[..., 0] * 255), IMAGES)
    assert sorted(os.listdir(tmp_path / "data" / "mnist")) == sorted(published)

    serve_files(
        monkeypatch, "mnist", published, tmp_path / "server", bad="train-images-idx3-ubyte.gz"
    )
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
