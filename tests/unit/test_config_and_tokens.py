"""Settings from the environment, and pagination tokens."""

from __future__ import annotations

import pytest

from chalicelib.config import ConfigurationError, JwtSettings, Settings
from chalicelib.errors import InvalidInputError
from chalicelib.pagination import PageTokenCodec, Position

BASE = {"BUCKET_NAME": "b", "TABLE_NAME": "t", "TOKEN_SECRET": "s" * 32}
CURSOR = "2026-11-21T10:30:00.123Z#7f1c1f5e-0000-4000-8000-000000000000"


def test_settings_defaults():
    settings = Settings.from_env(BASE)

    assert settings.max_image_bytes == 50 * 1024 * 1024
    assert settings.url_expires_seconds == 900
    assert settings.s3_public_endpoint_url is None
    assert settings.auth_mode == "none"


def test_settings_read_every_variable():
    settings = Settings.from_env(
        {
            **BASE,
            "MAX_IMAGE_BYTES": "5",
            "MAX_IMAGE_PIXELS": "6",
            "URL_EXPIRES_SECONDS": "7",
            "AUTH_MODE": "jwt",
            "JWT_SECRET": "j" * 32,
            "JWT_ISSUER": "issuer",
            "JWT_AUDIENCE": "audience",
            "S3_PUBLIC_ENDPOINT_URL": "http://localhost:4566",
        }
    )

    assert (settings.max_image_bytes, settings.max_image_pixels, settings.url_expires_seconds) == (
        5,
        6,
        7,
    )
    assert settings.s3_public_endpoint_url == "http://localhost:4566"
    assert settings.auth_mode == "jwt"
    assert JwtSettings.from_env(
        {"JWT_SECRET": "j" * 32, "JWT_ISSUER": "issuer", "JWT_AUDIENCE": "audience"}
    ) == JwtSettings(secret="j" * 32, issuer="issuer", audience="audience")


def test_jwt_settings_default_issuer_and_audience_and_cognito_needs_no_secret():
    cognito = Settings.from_env({**BASE, "AUTH_MODE": "cognito"})

    assert JwtSettings.from_env({"JWT_SECRET": "j" * 32}) == JwtSettings(
        secret="j" * 32, issuer="image-service", audience="image-service"
    )
    assert cognito.auth_mode == "cognito"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"BUCKET_NAME": ""}, "BUCKET_NAME"),
        ({"TABLE_NAME": " "}, "TABLE_NAME"),
        ({"TOKEN_SECRET": "short"}, "TOKEN_SECRET"),
        ({"MAX_IMAGE_BYTES": "ten"}, "MAX_IMAGE_BYTES"),
        ({"URL_EXPIRES_SECONDS": "0"}, "URL_EXPIRES_SECONDS"),
        ({"AUTH_MODE": "true"}, "AUTH_MODE must be one of none, jwt, cognito, got 'true'"),
    ],
)
def test_settings_refuse_bad_values(change, named):
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env({**BASE, **change})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "JWT_SECRET is required"),
        ({"JWT_SECRET": "x" * 31}, "JWT_SECRET must be at least 32 bytes"),
    ],
)
def test_jwt_settings_refuse_a_missing_or_short_secret(environ, named):
    with pytest.raises(ConfigurationError, match=named):
        JwtSettings.from_env(environ)


def test_token_round_trip():
    codec = PageTokenCodec("k" * 32)

    position = Position(CURSOR, 1.5e-6)
    assert codec.decode(codec.encode(position, {"user_id": "a"}), {"user_id": "a"}) == position


def test_token_signed_with_another_secret_is_refused():
    token = PageTokenCodec("a" * 32).encode(Position(CURSOR), {})

    with pytest.raises(InvalidInputError, match="next_token"):
        PageTokenCodec("b" * 32).decode(token, {})


def test_token_for_other_filters_is_refused():
    codec = PageTokenCodec("k" * 32)

    with pytest.raises(InvalidInputError, match="other filters"):
        codec.decode(codec.encode(Position(CURSOR), {"tags": ["a"]}), {"tags": ["b"]})


@pytest.mark.parametrize(
    ("extra", "path_style"),
    [
        ({}, False),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, True),
        ({"AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000"}, True),
        ({"S3_PUBLIC_ENDPOINT_URL": "http://localhost:4566"}, True),
    ],
)
def test_path_style_only_where_an_endpoint_is_overridden(extra, path_style):
    assert Settings.from_env({**BASE, **extra}).s3_path_style is path_style


def test_settings_read_processing_upload_and_cors_variables():
    settings = Settings.from_env(
        {
            **BASE,
            "MAX_DECODE_BYTES": "1000",
            "MAX_DECODED_PIXELS": "5000",
            "MAX_ANIMATION_FRAMES": "12",
            "RENDITION_SIZES": "640, 320,640",
            "UPLOAD_EXPIRES_SECONDS": "60",
            "UPLOAD_LEASE_SECONDS": "300",
            "CORS_ALLOW_ORIGINS": "https://app.example.com, http://localhost:3000",
            "SWEEP_GRACE_SECONDS": "5",
        }
    )

    assert settings.max_decode_bytes == 1000
    assert settings.max_decoded_pixels == 5000
    assert settings.max_animation_frames == 12
    assert settings.rendition_sizes == (320, 640)
    assert settings.upload_expires_seconds == 60
    assert settings.upload_lease_seconds == 300
    assert settings.cors_allow_origins == ("https://app.example.com", "http://localhost:3000")
    assert settings.sweep_grace_seconds == 5


def test_settings_defaults_for_processing_and_uploads():
    settings = Settings.from_env(BASE)

    assert settings.max_decode_bytes == 256 * 1024 * 1024
    assert settings.max_decoded_pixels == 1_000_000_000
    assert settings.max_animation_frames == 300
    assert settings.rendition_sizes == (320, 640, 1080)
    assert settings.upload_expires_seconds == 3600
    assert settings.upload_lease_seconds == 180
    assert settings.cors_allow_origins == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RENDITION_SIZES", "320,big"),
        ("RENDITION_SIZES", "0"),
        ("CORS_ALLOW_ORIGINS", "example.com"),
    ],
)
def test_settings_refuse_malformed_lists(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**BASE, name: value})
