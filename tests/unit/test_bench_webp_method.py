"""bench/webp_method.py: its SSIM, and every input and method at a tiny scale. No
assertion on timing."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFilter

from bench import webp_method
from bench.imaging import _photo


def test_ssim_is_one_for_identical_images_and_falls_with_the_damage() -> None:
    image = _photo(160, 120)
    slightly = image.filter(ImageFilter.GaussianBlur(0.6))
    badly = image.filter(ImageFilter.GaussianBlur(3))

    assert webp_method.ssim(image, image.copy()) == pytest.approx(1.0)
    assert 1.0 > webp_method.ssim(image, slightly) > webp_method.ssim(image, badly)
    assert webp_method.ssim(image, Image.new("RGB", image.size, "gray")) < 0.5


def test_every_still_input_is_measured_for_every_method() -> None:
    measured = webp_method.measure_webp_methods(runs=1, scale=0.05)

    assert [row["label"] for row in measured["rows"]] == ["12 MP JPEG", "24 MP PNG", "12 MP HEIC"]
    for row in measured["rows"]:
        assert [m["method"] for m in row["methods"]] == list(webp_method.METHODS)
        for m in row["methods"]:
            assert m["cpu_s"] >= 0 and m["bytes"] > 0 and 0.5 < m["ssim"] <= 1.0
    markdown = "\n".join(webp_method.render(measured))
    assert f"The service uses method {measured['current']}." in markdown
    assert markdown.count("| 12 MP JPEG |") == len(webp_method.METHODS)
