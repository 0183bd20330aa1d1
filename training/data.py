"""IDX dataset files: finding them, reading them with checks, and a fixed validation split.

``fashion_mnist`` and ``mnist`` are the standard 60,000 + 10,000 files of 10 classes; ``idx`` is a user's
own 28x28 grayscale data in the same four files, of any size and number of classes (names from a labels
file, one per line, else "0".."N-1").
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(digit) for digit in range(10)),
}
DATASETS = (*CLASS_NAMES, "idx")
# Mirror images keep their class here (a shoe is a shoe either way round), so training may flip them.
MIRROR_SAFE = ("fashion_mnist",)
# Debian's package names the folders with a dash: /usr/share/datasets/fashion-mnist/.
SYSTEM_DIRS = {name: Path("/usr/share/datasets") / name.replace("_", "-") for name in CLASS_NAMES}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EXPECTED_COUNTS = {"train": 60_000, "test": 10_000}
# IDX type byte -> numpy dtype (big-endian, as the format stores it)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message names the file and what to do."""


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or not), checking its magic number, dimensions and size."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from error
    if len(raw) < 4:
        raise DatasetError(f"{path}: file too short ({len(raw)} bytes) to hold an IDX header")
    zero_a, zero_b, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero_a != 0 or zero_b != 0 or type_code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN)")
    if ndim == 0 or (expected_ndim is not None and ndim != expected_ndim):
        raise DatasetError(f"{path}: IDX header says {ndim} dimensions, expected {expected_ndim}")
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header_end])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    body = raw[header_end:]
    if len(body) != expected_bytes:
        raise DatasetError(
            f"{path}: header declares dimensions {list(dims)} ({expected_bytes} bytes of data) "
            f"but the file holds {len(body)}; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(body, dtype=dtype).astype(dtype.newbyteorder("=")).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def candidate_dirs(dataset: str, data_dir: Path | None = None) -> list[Path]:
    """Where to look, in order: --data-dir, $TENSORGATE_DATA, Debian's package, Keras' cache."""
    if data_dir is not None:
        return [data_dir]
    if dataset == "idx":
        return []
    dirs = []
    if env := os.environ.get("TENSORGATE_DATA"):
        dirs += [Path(env), Path(env) / dataset, Path(env) / dataset.replace("_", "-")]
    dirs.append(SYSTEM_DIRS[dataset])
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    dirs.append(keras_home / "datasets" / dataset.replace("_", "-"))
    dirs.append(keras_home / "datasets" / dataset)
    return dirs


def locate(dataset: str, data_dir: Path | None = None) -> Path:
    """The first directory holding all four IDX files of the dataset."""
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if dataset == "idx" and data_dir is None:
        raise DatasetError("--dataset idx needs --data-dir DIR, the folder holding your four IDX files")
    searched = candidate_dirs(dataset, data_dir)
    stems = [stem for pair in SPLIT_FILES.values() for stem in pair]
    for directory in searched:
        if directory.is_dir() and all(_find_file(directory, stem) for stem in stems):
            return directory
    if data_dir is not None and data_dir.is_dir():
        missing = [stem for stem in stems if _find_file(data_dir, stem) is None]
        if len(missing) < len(stems):
            names = ", ".join(stem + "[.gz]" for stem in missing)
            raise DatasetError(f"{data_dir}: missing {names} (the other IDX files are there)")
    hints = {"fashion_mnist": "apt-get install dataset-fashion-mnist", "mnist": "download the four MNIST IDX files"}
    hint = hints.get(dataset, "write your images and labels as IDX files")
    raise DatasetError(
        f"{dataset}: no IDX files found in {', '.join(str(d) for d in searched)}. "
        f"Get them with `{hint}`, or pass --data-dir / set TENSORGATE_DATA to a folder holding "
        f"train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        f"t10k-labels-idx1-ubyte[.gz]"
    )


def load_split(
    directory: Path, split: str, check_count: bool = True, classes: int | None = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 [n, 28, 28] and labels as uint8 [n] for 'train' or 'test'.

    ``classes``: labels must be below it (None: any byte).
    """
    image_stem, label_stem = SPLIT_FILES[split]
    image_path = _find_file(directory, image_stem)
    label_path = _find_file(directory, label_stem)
    if image_path is None or label_path is None:
        missing = image_stem if image_path is None else label_stem
        raise DatasetError(f"{directory / missing}: file not found (also tried .gz)")
    images = read_idx(image_path, expected_ndim=3)
    labels = read_idx(label_path, expected_ndim=1)
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{image_path}: images are {images.shape[1:]}, expected 28x28")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DatasetError(f"{image_path}: expected unsigned bytes (IDX type 0x08)")
    if len(images) != len(labels):
        raise DatasetError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
    if check_count and len(images) != EXPECTED_COUNTS[split]:
        raise DatasetError(f"{image_path}: {len(images)} images, expected {EXPECTED_COUNTS[split]}")
    if classes is not None and labels.size and labels.max() >= classes:
        raise DatasetError(
            f"{label_path}: label {int(labels.max())} is outside the {classes} classes (0..{classes - 1})"
        )
    return images, labels


def read_labels_file(path: Path) -> tuple[str, ...]:
    """Class names, one per line in class order (blank lines and surrounding spaces ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read the labels file ({error})") from error
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) < 2:
        raise DatasetError(f"{path}: a labels file needs at least two class names, one per line; found {len(names)}")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: class names repeat; each line must name a different class")
    return names


@dataclass(frozen=True)
class Dataset:
    name: str
    directory: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES["fashion_mnist"]
    seed: int = 0  # of the validation split

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def mirror_safe(self) -> bool:
        return self.name in MIRROR_SAFE


def load_dataset(
    name: str = "fashion_mnist",
    data_dir: Path | None = None,
    validation_size: int | None = None,
    seed: int = 0,
    check_counts: bool = True,
    labels_file: Path | None = None,
) -> Dataset:
    """Train/validation/test arrays; the validation split is a fixed, seeded draw from the training set
    (5,000 images, or a tenth of a smaller training set)."""
    if labels_file is not None and name != "idx":
        raise DatasetError(f"--labels is for --dataset idx; {name} has its own class names")
    directory = locate(name, data_dir)
    if name == "idx":
        names = read_labels_file(labels_file) if labels_file is not None else None
        limit = len(names) if names else None
        x_train_all, y_train_all = load_split(directory, "train", check_count=False, classes=limit)
        x_test, y_test = load_split(directory, "test", check_count=False, classes=limit)
        if names is None:
            count = int(max(y_train_all.max(initial=0), y_test.max(initial=0))) + 1
            names = tuple(str(index) for index in range(count))
        if len(names) < 2:
            raise DatasetError(f"{directory}: the labels hold one class only; a classifier needs two or more")
        if len(x_train_all) < 20:
            raise DatasetError(f"{directory}: {len(x_train_all)} training images; need at least 20")
    else:
        names = CLASS_NAMES[name]
        x_train_all, y_train_all = load_split(directory, "train", check_counts)
        x_test, y_test = load_split(directory, "test", check_counts)
    if validation_size is None:
        validation_size = min(5_000, max(1, len(x_train_all) // 10))
    train_index, val_index = validation_split(len(x_train_all), validation_size, seed)
    return Dataset(
        name=name,
        directory=directory,
        x_train=x_train_all[train_index],
        y_train=y_train_all[train_index],
        x_val=x_train_all[val_index],
        y_val=y_train_all[val_index],
        x_test=x_test,
        y_test=y_test,
        class_names=names,
        seed=seed,
    )


def validation_split(count: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < validation_size < count:
        raise ValueError(f"validation_size must be between 1 and {count - 1}, got {validation_size}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[validation_size:]), np.sort(order[:validation_size])


def subset(images: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced, seeded subset (for quick training and calibration sets)."""
    if size >= len(images):
        return images, labels
    rng = np.random.default_rng(seed)
    classes = int(labels.max()) + 1
    per_class = max(1, size // classes)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(classes)]
    index = np.sort(np.concatenate(picks))
    return images[index], labels[index]
