"""serving.pictures.prepare: each step of docs/pictures.md on pictures whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from serving.errors import InvalidInput
from serving.pictures import prepare, spec
from serving.pictures.prepare import area_weights, fitted_size


def _photo(height: int, width: int, box: tuple[int, int, int, int], level: int = 0, paper: int = 255) -> np.ndarray:
    """A ``level`` rectangle (x, y, width, height) on ``paper``."""
    picture = np.full((height, width), paper, np.int32)
    x, y, w, h = box
    picture[y : y + h, x : x + w] = level
    return picture


def test_a_dataset_style_picture_is_used_unchanged() -> None:
    picture = np.zeros((28, 28), np.int32)
    picture[3:25, 10:18] = np.arange(8) * 30 + 7  # a light object on black, off centre, not touching the edges
    array, done = prepare(picture, None)
    np.testing.assert_array_equal(array[..., 0], picture)
    assert done.dataset_style and done.steps() == [] and done.box is None


def test_a_dark_object_on_white_is_inverted_cropped_scaled_and_centred() -> None:
    array, done = prepare(_photo(80, 100, (30, 10, 20, 40)), None)
    assert (done.inverted, done.background, done.box, done.scaled_to, done.padded) == (
        True,
        255,
        (30, 10, 20, 40),
        (14, 28),
        (7, 0, 7, 0),
    )
    expected = np.zeros((28, 28), np.float32)
    expected[:, 7:21] = 255
    np.testing.assert_array_equal(array[..., 0], expected)
    assert done.steps() == [
        "light background (255) inverted",
        "cropped to the object: 20x40 at (30, 10)",
        "scaled to 14x28",
        "padded to 28x28 (left 7, top 0, right 7, bottom 0)",
    ]


def test_a_light_object_on_black_is_trimmed_without_inverting() -> None:
    array, done = prepare(_photo(200, 60, (5, 50, 50, 25), level=200, paper=0), None)
    assert not done.inverted and done.box == (5, 50, 50, 25) and done.scaled_to == (28, 14)
    level = (200 - spec.BLACK_POINT) * 255 / (255 - spec.BLACK_POINT)
    assert array[7:21, :, 0].min() == array[7:21, :, 0].max() == np.float32(round(level))
    assert array[:7].max() == array[21:].max() == 0


def test_exposure_and_background_tint_are_levelled_away() -> None:
    grey_paper = _photo(60, 60, (10, 10, 40, 40), level=40, paper=215)
    array, done = prepare(grey_paper, None)
    assert done.background == 215 and done.inverted
    assert array.max() == np.float32(round((175 - spec.BLACK_POINT) * 255 / (255 - 40 - spec.BLACK_POINT)))


def test_noise_below_the_tolerance_does_not_move_the_box() -> None:
    rng = np.random.default_rng(0)
    picture = _photo(120, 90, (20, 30, 30, 60)) - rng.integers(0, spec.TOLERANCE, (120, 90))
    _, done = prepare(np.clip(picture, 0, 255), None)
    assert done.box == (20, 30, 30, 60)


def test_a_light_object_on_a_transparent_background_goes_on_black_a_dark_one_on_white() -> None:
    alpha = np.zeros((40, 40), np.uint8)
    alpha[5:35, 10:30] = 255
    light, done_light = prepare(np.full((40, 40), 230, np.int32), alpha)
    dark, done_dark = prepare(np.full((40, 40), 20, np.int32), alpha)
    assert (done_light.alpha_background, done_light.inverted) == ("black", False)
    assert (done_dark.alpha_background, done_dark.inverted) == ("white", True)
    assert done_light.box == done_dark.box == (10, 5, 20, 30)
    assert light.max() > 200 and dark.max() > 200


def test_exif_orientation_turns_before_anything_else() -> None:
    lying = _photo(50, 90, (10, 20, 60, 15))  # stored sideways; orientation 6 shows it standing
    _, done = prepare(lying, None, orientation=6)
    assert done.orientation == 6 and done.box == (15, 10, 15, 60) and done.scaled_to == (7, 28)
    assert done.steps()[0] == "EXIF orientation 6 applied"


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (2, 3)])
def test_tiny_pictures(shape: tuple[int, int]) -> None:
    picture = np.full(shape, 255, np.int32)
    picture.flat[0] = 0
    if picture.size == 1:
        with pytest.raises(InvalidInput, match="all one colour"):
            prepare(picture, None)
        return
    array, done = prepare(picture, None)
    assert array.shape == (28, 28, 1) and done.box is not None


def test_pictures_with_nothing_to_classify_are_refused() -> None:
    with pytest.raises(
        InvalidInput, match=r"^The picture is all one colour \(level 255\): there is nothing to classify$"
    ):
        prepare(np.full((64, 64), 255, np.int32), None)
    faint = _photo(64, 64, (10, 10, 20, 20), level=255 - spec.TOLERANCE)
    with pytest.raises(InvalidInput, match=r"^No object stands out from the background \(level 0, tolerance 24\)"):
        prepare(faint, None)


def test_area_weights_average_exactly() -> None:
    weights = area_weights(7, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_allclose(weights.sum(axis=0), 3 / 7)
    np.testing.assert_array_equal(area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    assert fitted_size(40, 20) == (28, 14) and fitted_size(1000, 10) == (28, 1) and fitted_size(3, 3) == (28, 28)
