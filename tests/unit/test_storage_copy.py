"""``ImageStorage.copy``: the server-side copy ingest stores a direct upload's original with."""

from __future__ import annotations

import boto3

from chalicelib.storage import ImageStorage


def storage() -> ImageStorage:
    store = ImageStorage(boto3.client("s3"), "copy-bucket")
    store.create_bucket()
    return store


def test_copies_the_object_it_saw_with_type_and_digest(aws: None) -> None:
    store = storage()
    store.put("uploads/u", b"bytes A", "application/octet-stream", "x")
    seen = store.head("uploads/u")
    assert seen is not None

    assert store.copy(seen, "images/i/v.png", "image/png", "d" * 64)

    copied = boto3.client("s3").get_object(Bucket="copy-bucket", Key="images/i/v.png")
    assert copied["Body"].read() == b"bytes A"
    assert copied["ContentType"] == "image/png"
    assert copied["Metadata"] == {"sha256": "d" * 64}


def test_refuses_an_object_replaced_or_removed_since_it_was_seen(aws: None) -> None:
    store = storage()
    store.put("uploads/u", b"bytes A", "image/png", "x")
    seen = store.head("uploads/u")
    assert seen is not None
    store.put("uploads/u", b"bytes B", "image/png", "x")

    # moto ignores CopySourceIfMatch; the copy's ETag tells.
    assert not store.copy(seen, "images/i/v.png", "image/png", "x")
    store.delete("uploads/u")
    assert not store.copy(seen, "images/i/w.png", "image/png", "x")
