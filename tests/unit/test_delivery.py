"""Delivery: URLs that stay the same for a cache window (``chalicelib.urls``), and the
immutable ``Cache-Control`` stored with every original and rendition."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.config import ConfigurationError, Settings
from chalicelib.service import AwsClients, ImageService, object_urls
from chalicelib.storage import IMMUTABLE_CACHE_CONTROL, attachment_disposition
from chalicelib.urls import CloudFrontUrlSigner, S3UrlSigner, load_private_key, window_expiry
from chalicelib.validation import ListQuery, ViewOptions, parse_list_query
from tests.unit.conftest import BUCKET, SETTINGS, FixedClock, image_bytes, upload

# 10:30:00 UTC on 2026-11-21 is inside the window 10:00-11:00.
T = datetime(2026, 11, 21, 10, 30, tzinfo=UTC)
WINDOW_START = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def test_window_expiry() -> None:
    assert window_expiry(T, 3600, 900) == (
        int(WINDOW_START.timestamp()),
        int(WINDOW_START.timestamp()) + 3600 + 900,
    )
    # The window's first second belongs to it; its last second too.
    assert window_expiry(WINDOW_START, 3600, 900)[0] == int(WINDOW_START.timestamp())
    last = WINDOW_START + timedelta(seconds=3599.999)
    assert window_expiry(last, 3600, 900)[0] == int(WINDOW_START.timestamp())


@pytest.mark.parametrize(
    ("endpoint", "style", "token"),
    [
        (None, "virtual", None),
        ("http://127.0.0.1:4566", "path", "session-token"),
    ],
)
@pytest.mark.parametrize("filename", [None, 'Ünï "code" photo?.png'])
def test_s3_urls_are_byte_identical_to_botocores_signed_at_the_window_start(
    endpoint: str | None, style: str, token: str | None, filename: str | None
) -> None:
    presigner = boto3.client(
        "s3",
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    )
    credentials = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", aws_session_token=token
    ).get_credentials()
    signer = S3UrlSigner(presigner, BUCKET, 3600, credentials)
    key = "images/7f3c/0123456789abcdef.png"
    ours = signer.url(key, T, 900, filename)

    params: dict[str, str] = {"Bucket": BUCKET, "Key": key}
    if filename is not None:
        params["ResponseContentDisposition"] = attachment_disposition(filename)
    # botocore's own presigning with its clock frozen at the window's start (botocore only).
    frozen = WINDOW_START.replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=frozen):
        theirs = presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=4500)
    assert ours == theirs
    query = parse_qs(urlsplit(ours).query)
    assert query["X-Amz-Date"] == ["20261121T100000Z"]
    assert query["X-Amz-Expires"] == ["4500"]
    # Every second of the window gives that URL; the next window another.
    assert signer.url(key, WINDOW_START, 900, filename) == ours
    assert signer.url(key, WINDOW_START + timedelta(seconds=3599), 900, filename) == ours
    assert signer.url(key, WINDOW_START + timedelta(seconds=3600), 900, filename) != ours


def test_s3_urls_longer_than_seven_days_are_refused() -> None:
    presigner = boto3.client("s3", region_name="us-east-1")
    signer = S3UrlSigner(presigner, BUCKET, 7 * 24 * 3600, None)
    with pytest.raises(ValueError, match="7 days"):
        signer.url("images/x.png", T, 1)
    env = {"BUCKET_NAME": "b", "TABLE_NAME": "t", "TOKEN_SECRET": "s" * 32}
    with pytest.raises(ConfigurationError, match="URL_CACHE_WINDOW_SECONDS"):
        Settings.from_env({**env, "URL_CACHE_WINDOW_SECONDS": str(7 * 24 * 3600)})
    assert Settings.from_env(env).url_cache_window_seconds == 3600


def test_a_presigned_url_fetches_the_object_with_its_cache_headers(aws: None) -> None:
    """moto serves a window-signed URL: its signature is what S3 checks."""
    import requests

    clients = AwsClients.from_settings(SETTINGS)
    service = ImageService.from_settings(SETTINGS, clients)
    service.storage.create_bucket()
    service.storage.put("images/a/1.png", b"png bytes", "image/png", "0" * 64)
    url = service.urls.url("images/a/1.png", datetime.now(UTC), 900)
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"png bytes"
    assert response.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL


def _listing(service: ImageService) -> dict[str, Any]:
    query: ListQuery = parse_list_query({"user_id": ["alice"]})
    return service.list_images(query)


def _urls(listing: dict[str, Any]) -> list[str]:
    return [
        url
        for item in listing["items"]
        for url in [item["url"], *(r["url"] for r in item["renditions"])]
    ]


def test_listings_within_a_window_give_byte_identical_urls_from_any_instance(
    client: Any, aws_clients: AwsClients, clock: FixedClock
) -> None:
    for _ in range(2):
        upload(client, data=image_bytes(size=(400, 300)))
    # Two "instances": services built separately, on clients built separately.
    first_clock = FixedClock(T)
    second_clock = FixedClock(T + timedelta(minutes=20))
    first = ImageService.from_settings(SETTINGS, AwsClients.from_settings(SETTINGS))
    second = ImageService.from_settings(SETTINGS, AwsClients.from_settings(SETTINGS))
    first = ImageService(first.storage, first.metadata, SETTINGS, first_clock, first.urls)
    second = ImageService(second.storage, second.metadata, SETTINGS, second_clock, second.urls)

    listing = _listing(first)
    urls = _urls(listing)
    assert len(set(urls)) == len(urls) >= 2 * 2  # originals and renditions, all distinct
    first_clock.now += timedelta(minutes=1)  # a minute later, same instance
    assert _urls(_listing(first)) == urls
    assert _urls(_listing(second)) == urls
    # The view and the download follow the same rule.
    image_id = listing["items"][0]["image_id"]
    options = ViewOptions(expires_in=900, download=True, metadata_only=False)
    view = first.view(image_id, options)
    other_view = second.view(image_id, options)
    assert other_view | {"expires_in": 0} == view | {"expires_in": 0}
    assert other_view["expires_in"] == view["expires_in"] - 19 * 60  # 20 min - 1 min later
    assert first.download_url(image_id) == second.download_url(image_id)
    assert view["download_url"] == first.download_url(image_id)  # default expiry is 900
    assert view["renditions"] == listing["items"][0]["renditions"]
    # 10:31 -> the URLs live until 11:00 + 900 s.
    assert view["expires_in"] == 29 * 60 + 900

    # Across the boundary, every URL changes.
    first_clock.now = WINDOW_START + timedelta(hours=1)
    later = _urls(_listing(first))
    assert all(a != b for a, b in zip(urls, later, strict=True))


def test_views_report_how_long_the_urls_keep_working(
    client: Any, service: ImageService, clock: FixedClock
) -> None:
    image_id = upload(client)["image_id"]
    clock.now = WINDOW_START + timedelta(minutes=59, seconds=30)
    options = ViewOptions(expires_in=60, download=False, metadata_only=False)
    view = service.view(image_id, options)
    # 10:59:30: this window ends in 30 s; the URL works 60 s past that.
    assert view["expires_in"] == 30 + 60
    assert "X-Amz-Expires=3660&" in view["download_url"]


def test_originals_and_renditions_are_stored_immutable_with_their_type(
    client: Any, aws_clients: AwsClients
) -> None:
    record = upload(client, data=image_bytes("JPEG", size=(700, 500)), filename="p.jpg")
    s3 = aws_clients.s3
    original = s3.head_object(Bucket=BUCKET, Key=record["s3_key"])
    assert original["CacheControl"] == IMMUTABLE_CACHE_CONTROL
    assert original["ContentType"] == "image/jpeg"
    assert record["renditions"]
    for rendition in record["renditions"]:
        head = s3.head_object(Bucket=BUCKET, Key=rendition["s3_key"])
        assert head["CacheControl"] == IMMUTABLE_CACHE_CONTROL
        assert head["ContentType"] == "image/webp"


def test_the_server_side_copy_replaces_the_uploads_headers(
    aws_clients: AwsClients, service: ImageService
) -> None:
    storage = service.storage
    aws_clients.s3.put_object(
        Bucket=BUCKET,
        Key="uploads/u1",
        Body=b"bytes",
        ContentType="application/octet-stream",
        CacheControl="no-store",
    )
    source = storage.head("uploads/u1")
    assert source is not None
    assert storage.copy(source, "images/i1/v.png", "image/png", "0" * 64)
    head = aws_clients.s3.head_object(Bucket=BUCKET, Key="images/i1/v.png")
    assert head["CacheControl"] == IMMUTABLE_CACHE_CONTROL
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"sha256": "0" * 64}


def _verify_canned_policy(url: str, public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """Check a CloudFront canned-policy URL as CloudFront does; return its parameters."""
    parts = urlsplit(url)
    params = {name: values[0] for name, values in parse_qs(parts.query).items()}
    signed = ["response-content-disposition"] if "response-content-disposition" in params else []
    resource = f"{parts.scheme}://{parts.netloc}{parts.path}"
    if signed:
        resource += "?" + parts.query.split("&Expires=", 1)[0]
    policy = (
        f'{{"Statement":[{{"Resource":"{resource}",'
        f'"Condition":{{"DateLessThan":{{"AWS:EpochTime":{params["Expires"]}}}}}}}]}}'
    )
    translated = params["Signature"].translate(str.maketrans("-_~", "+=/"))
    public_key.verify(
        base64.b64decode(translated), policy.encode(), padding.PKCS1v15(), hashes.SHA1()
    )
    return params


def test_cloudfront_urls_verify_with_the_public_key_and_expire_after_the_window() -> None:
    pem = private_key_pem()
    public_key = serialization.load_pem_private_key(pem, password=None).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    signer = CloudFrontUrlSigner(
        "d111111abcdef8.cloudfront.net", "K2JCJMDEHXQW5F", lambda: pem, 3600
    )
    url = signer.url("renditions/7f3c/0123-320.webp", T, 900)
    assert url.startswith("https://d111111abcdef8.cloudfront.net/renditions/7f3c/0123-320.webp?")
    params = _verify_canned_policy(url, public_key)
    assert params["Key-Pair-Id"] == "K2JCJMDEHXQW5F"
    assert int(params["Expires"]) == int(WINDOW_START.timestamp()) + 3600 + 900
    assert signer.url("renditions/7f3c/0123-320.webp", T + timedelta(minutes=29), 900) == url

    attachment = signer.url("images/7f3c/0123.png", T, 900, 'Ünï "x".png')
    params = _verify_canned_policy(attachment, public_key)
    assert params["response-content-disposition"] == attachment_disposition('Ünï "x".png')

    # Another key (a forged or rotated-out one) does not verify.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(InvalidSignature):
        _verify_canned_policy(url, other)


def test_the_cloudfront_key_comes_from_ssm_or_a_file(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = private_key_pem()
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/image-service/cf-key", Value=pem.decode(), Type="SecureString")
    assert load_private_key(ssm, "/image-service/cf-key", None) == pem
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    assert load_private_key(None, None, str(path)) == pem
    with pytest.raises(ValueError, match="CLOUDFRONT_PRIVATE_KEY_PARAMETER"):
        load_private_key(None, None, None)

    env = {
        "BUCKET_NAME": BUCKET,
        "TABLE_NAME": "t",
        "TOKEN_SECRET": "s" * 32,
        "IMAGE_URL_SIGNER": "cloudfront",
        "CLOUDFRONT_DOMAIN": "d111111abcdef8.cloudfront.net",
        "CLOUDFRONT_KEY_PAIR_ID": "K2JCJMDEHXQW5F",
        "CLOUDFRONT_PRIVATE_KEY_PARAMETER": "/image-service/cf-key",
    }
    settings = Settings.from_env(env)
    clients = AwsClients.from_settings(settings)
    assert clients.ssm is not None
    urls = object_urls(settings, clients)
    assert isinstance(urls, CloudFrontUrlSigner)
    assert urls.url("images/x.png", T, 900).startswith("https://d111111abcdef8.cloudfront.net/")
    for missing in ("CLOUDFRONT_DOMAIN", "CLOUDFRONT_KEY_PAIR_ID"):
        with pytest.raises(ConfigurationError, match=missing):
            Settings.from_env({k: v for k, v in env.items() if k != missing})
    with pytest.raises(ConfigurationError, match="IMAGE_URL_SIGNER"):
        Settings.from_env({**env, "IMAGE_URL_SIGNER": "akamai"})


def test_a_malformed_cloudfront_key_is_a_clear_error() -> None:
    signer = CloudFrontUrlSigner("d.cloudfront.net", "K1", lambda: b"not a key", 3600)
    with pytest.raises(ValueError, match="PKCS#1 RSA PEM"):
        signer.url("images/x.png", T, 900)
