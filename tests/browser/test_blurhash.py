"""The page's BlurHash decoder (``chalicelib/web/blurhash.js``) in Chromium, checked
against hashes made by a reference encoder written here from the algorithm."""

from __future__ import annotations

import math

import pytest

from tests.browser.conftest import BrowserPage

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
Pixel = tuple[int, int, int]


def encode83(value: int, length: int) -> str:
    return "".join(DIGITS[(value // 83 ** (length - 1 - i)) % 83] for i in range(length))


def to_linear(value: int) -> float:
    v = value / 255
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def to_srgb(value: float) -> int:
    v = min(1.0, max(0.0, value))
    return (
        round(v * 12.92 * 255 + 0.5)
        if v <= 0.0031308
        else round((1.055 * v ** (1 / 2.4) - 0.055) * 255 + 0.5)
    )


def sign_pow(value: float, exponent: float) -> float:
    return math.copysign(abs(value) ** exponent, value)


def encode(pixels: list[list[Pixel]], components_x: int, components_y: int) -> str:
    """Reference BlurHash encoder: ``pixels[y][x]`` sRGB."""
    height, width = len(pixels), len(pixels[0])
    factors: list[tuple[float, float, float]] = []
    for j in range(components_y):
        for i in range(components_x):
            norm = 1 if i == j == 0 else 2
            total = [0.0, 0.0, 0.0]
            for y in range(height):
                for x in range(width):
                    basis = (
                        norm
                        * math.cos(math.pi * i * x / width)
                        * math.cos(math.pi * j * y / height)
                    )
                    for c in range(3):
                        total[c] += basis * to_linear(pixels[y][x][c])
            factors.append(
                (
                    total[0] / (width * height),
                    total[1] / (width * height),
                    total[2] / (width * height),
                )
            )
    dc, ac = factors[0], factors[1:]
    text = encode83((components_x - 1) + (components_y - 1) * 9, 1)
    if ac:
        actual = max(abs(v) for factor in ac for v in factor)
        quantised = max(0, min(82, math.floor(actual * 166 - 0.5)))
        maximum = (quantised + 1) / 166
    else:
        quantised, maximum = 0, 1.0
    text += encode83(quantised, 1)
    text += encode83((to_srgb(dc[0]) << 16) + (to_srgb(dc[1]) << 8) + to_srgb(dc[2]), 4)
    for factor in ac:
        q = [max(0, min(18, math.floor(sign_pow(v / maximum, 0.5) * 9 + 9.5))) for v in factor]
        text += encode83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2)
    return text


def decode_in_page(bp: BrowserPage, blurhash: str, size: int) -> list[int]:
    bp.page.goto(f"{bp.base_url}/")
    pixels: list[int] = bp.page.evaluate(
        """async ([hash, size]) => {
            const blurhash = await import('./assets/blurhash.js');
            return Array.from(blurhash.decode(hash, size, size));
        }""",
        [blurhash, size],
    )
    return pixels


def test_a_solid_colour_decodes_to_that_colour(desktop: BrowserPage) -> None:
    color = (200, 40, 90)
    blurhash = encode([[color] * 8 for _ in range(8)], 1, 1)  # the DC term only
    assert len(blurhash) == 6
    pixels = decode_in_page(desktop, blurhash, 16)
    assert len(pixels) == 16 * 16 * 4
    for offset in range(0, len(pixels), 4):
        assert all(abs(pixels[offset + c] - color[c]) <= 2 for c in range(3)), pixels[
            offset : offset + 4
        ]
        assert pixels[offset + 3] == 255
    desktop.assert_clean()


def test_a_gradient_decodes_close_to_the_image(desktop: BrowserPage) -> None:
    size = 24
    image = [
        [(round(255 * x / (size - 1)), 80, round(255 * y / (size - 1))) for x in range(size)]
        for y in range(size)
    ]
    blurhash = encode(image, 5, 5)
    assert len(blurhash) == 4 + 2 * 25
    pixels = decode_in_page(desktop, blurhash, size)
    worst = max(
        abs(pixels[4 * (x + y * size) + c] - image[y][x][c])
        for y in range(2, size - 2)
        for x in range(2, size - 2)
        for c in range(3)
    )
    assert worst <= 40, worst  # a blur, but the gradient's shape
    left, right = pixels[4 * (2 + 12 * size)], pixels[4 * (21 + 12 * size)]
    assert right - left > 150
    desktop.assert_clean()


def test_a_malformed_hash_is_refused_not_painted(desktop: BrowserPage) -> None:
    desktop.page.goto(f"{desktop.base_url}/")
    verdicts = desktop.page.evaluate(
        """async () => {
            const blurhash = await import('./assets/blurhash.js');
            const good = 'LEHV6nWB2yk8pyo0adR*.7kCMdnj';
            return ['', 'abc', good.slice(0, -1), good, 'L<>' + good.slice(3)]
                .map((hash) => blurhash.isBlurhash(hash));
        }"""
    )
    assert verdicts == [False, False, False, True, False]
    desktop.assert_clean()


def test_decodes_like_the_services_blurhash_library(desktop: BrowserPage) -> None:
    """The page paints what the service's own encoder (``blurhash`` on PyPI) means."""
    library = pytest.importorskip("blurhash", reason="the service's BlurHash library")
    size = 20
    image = [
        [[(x * 13) % 256, (y * 11) % 256, ((x + y) * 7) % 256] for x in range(size)]
        for y in range(size)
    ]
    blurhash = library.encode(image, components_x=4, components_y=3)
    expected = library.decode(blurhash, size, size)
    pixels = decode_in_page(desktop, blurhash, size)
    worst = max(
        abs(pixels[4 * (x + y * size) + c] - round(expected[y][x][c]))
        for y in range(size)
        for x in range(size)
        for c in range(3)
    )
    assert worst <= 1, worst
    desktop.assert_clean()
