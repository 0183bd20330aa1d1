from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from training.data import (
    CLASS_NAMES,
    SYSTEM_DIRS,
    DatasetError,
    load_dataset,
    load_split,
    locate,
    read_idx,
    subset,
    validation_split,
)


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, compress: bool = False) -> Path:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(">u1" if type_code == 0x08 else array.dtype).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_split_files(directory: Path, train: int = 30, test: int = 10, compress: bool = True) -> Path:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(
            directory / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28)), compress=compress
        )
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(count) % 10, compress=compress)
    return directory


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips(tmp_path, compress):
    array = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    path = write_idx(tmp_path / "x.idx", array, compress=compress)
    np.testing.assert_array_equal(read_idx(path, expected_ndim=3), array)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetError, match=r"bad\s+IDX magic number 0x01020801") as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = write_idx(tmp_path / "short", np.zeros((3, 28, 28)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(
        DatasetError, match=r"declares dimensions \[3, 28, 28\] \(2352 bytes of data\) but the file holds 2347"
    ):
        read_idx(path)


def test_read_idx_rejects_wrong_rank_and_corrupt_gzip(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(5))
    with pytest.raises(DatasetError, match="1 dimensions, expected 3"):
        read_idx(path, expected_ndim=3)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abcd")[:-6])
    with pytest.raises(DatasetError, match=r"broken\.gz: cannot read"):
        read_idx(broken)


def test_load_split_checks_counts_and_pairs(tmp_path):
    directory = make_split_files(tmp_path / "d", train=30, test=10)
    images, labels = load_split(directory, "train", check_count=False)
    assert images.shape == (30, 28, 28) and labels.shape == (30,)
    with pytest.raises(DatasetError, match="30 images, expected 60000"):
        load_split(directory, "train")
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.zeros(9), compress=True)
    with pytest.raises(DatasetError, match=r"holds 10 images but .* 9 labels"):
        load_split(directory, "test", check_count=False)


def test_locate_order_and_missing_data_message(tmp_path, monkeypatch):
    explicit = make_split_files(tmp_path / "explicit", compress=False)
    from_env = make_split_files(tmp_path / "env")
    monkeypatch.setenv("TENSORGATE_DATA", str(from_env))
    assert locate("fashion_mnist", explicit) == explicit
    assert locate("fashion_mnist") == from_env
    monkeypatch.setenv("TENSORGATE_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DatasetError, match="mnist: no IDX files found in") as error:
        locate("mnist")
    assert "--data-dir" in str(error.value)
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'; choose one of: fashion_mnist, mnist, idx"):
        locate("cifar")


def test_validation_split_is_deterministic_and_disjoint():
    train_a, val_a = validation_split(1000, 100, seed=3)
    _, val_b = validation_split(1000, 100, seed=3)
    np.testing.assert_array_equal(val_a, val_b)
    assert len(np.intersect1d(train_a, val_a)) == 0 and len(train_a) + len(val_a) == 1000
    assert not np.array_equal(val_a, validation_split(1000, 100, seed=4)[1])


def test_subset_is_class_balanced():
    labels = np.arange(1000) % 10
    _, picked = subset(np.zeros((1000, 28, 28)), labels, 200, seed=0)
    assert np.bincount(picked).tolist() == [20] * 10


@pytest.mark.skipif(not SYSTEM_DIRS["fashion_mnist"].is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_files():
    data = load_dataset("fashion_mnist", validation_size=5000, seed=0)
    assert data.x_train.shape == (55000, 28, 28) and data.x_val.shape == (5000, 28, 28)
    assert data.x_test.shape == (10000, 28, 28) and data.x_test.dtype == np.uint8
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.class_names == CLASS_NAMES["fashion_mnist"]
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def make_idx_dataset(directory: Path, train: int, test: int, classes: int) -> Path:
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.arange(count) % classes)
    return directory


def test_idx_dataset_of_any_size_and_number_of_classes(tmp_path):
    directory = make_idx_dataset(tmp_path / "own", train=120, test=30, classes=4)
    data = load_dataset("idx", directory)
    assert data.class_names == ("0", "1", "2", "3") and data.classes == 4
    assert len(data.x_val) == 12 and len(data.x_train) == 108 and len(data.x_test) == 30
    assert not data.mirror_safe
    labels = tmp_path / "labels.txt"
    labels.write_text("circle\n square \n\ntriangle\nstar\nhexagon\n")
    named = load_dataset("idx", directory, labels_file=labels)
    assert named.class_names == ("circle", "square", "triangle", "star", "hexagon") and named.classes == 5


def test_idx_dataset_errors_name_the_file(tmp_path):
    directory = make_idx_dataset(tmp_path / "own", train=60, test=20, classes=4)
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n")
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: label 3 is outside the 3 classes \(0\.\.2\)"):
        load_dataset("idx", directory, labels_file=three)
    with pytest.raises(DatasetError, match=r"missing\.txt: cannot read the labels file"):
        load_dataset("idx", directory, labels_file=tmp_path / "missing.txt")
    one = tmp_path / "one.txt"
    one.write_text("only\n")
    with pytest.raises(DatasetError, match="at least two class names"):
        load_dataset("idx", directory, labels_file=one)
    with pytest.raises(DatasetError, match="--dataset idx needs --data-dir"):
        load_dataset("idx")
    with pytest.raises(DatasetError, match="--labels is for --dataset idx"):
        load_dataset("fashion_mnist", directory, labels_file=three)
    write_idx(directory / "t10k-labels-idx1-ubyte", np.zeros(19))
    with pytest.raises(DatasetError, match=r"holds 20 images but .*t10k-labels-idx1-ubyte 19 labels"):
        load_dataset("idx", directory)
    (directory / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"own: missing t10k-labels-idx1-ubyte\[\.gz\] \(the other IDX files"):
        load_dataset("idx", directory)


def test_mnist_keeps_the_standard_checks(tmp_path):
    directory = make_split_files(tmp_path / "m", train=30, test=10)
    with pytest.raises(DatasetError, match="30 images, expected 60000"):
        load_dataset("mnist", directory)
    data = load_dataset("mnist", directory, check_counts=False)
    assert data.class_names == tuple(str(digit) for digit in range(10)) and not data.mirror_safe
