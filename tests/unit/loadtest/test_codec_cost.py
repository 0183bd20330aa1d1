from __future__ import annotations

import json

import numpy as np
import pytest

from loadtest import codec_cost, payloads


def test_every_codec_decodes_the_same_images_and_encodes_a_checkable_answer() -> None:
    images, _ = payloads.test_images()
    found = codec_cost.codecs(batch=2)
    assert list(found) == ["instances", "v2-json", "v2-binary"]
    expected = codec_cost.answer(2)["class_id"].tolist()
    for kind, (_, decoder, encoder) in found.items():
        decoded = decoder()
        image = decoded.inputs["image"]
        assert image.dtype == np.float32 and image.shape == (2, 28, 28, 1), kind
        np.testing.assert_array_equal(image[:, :, :, 0], images[:2])
        if kind == "instances":
            classes = payloads.rest_class_ids(encoder(), 2)
        else:
            body, header_length = encoder()
            assert (header_length is not None) == (kind == "v2-binary")
            classes = payloads.v2_class_ids(body, None if header_length is None else str(header_length), 2)
        assert classes == expected, kind


def test_main_prints_a_row_per_payload(capsys: pytest.CaptureFixture[str]) -> None:
    assert codec_cost.main(["--repeat", "3"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [row["payload"] for row in result["rows"]] == ["instances", "v2-json", "v2-binary"]
    assert all(row["decode_us"] > 0 and row["encode_us"] > 0 for row in result["rows"])
