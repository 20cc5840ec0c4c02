"""Upload path: the service's upload against a bare ``put_object`` of the same bytes.

Both sides talk HTTP to one moto server (``scripts.emulator``), a separate process as
S3 is: so the bytes really cross a socket, and ``tracemalloc`` in this process sees the
service's memory, not the emulator's copy of the object. The service side is what the
Lambda does with a request body: ``parse_upload`` (multipart parsing, field rules) and
``ImageService.upload`` (Pillow decode, SHA-256, S3 put, metadata transaction). The
bare side is ``put_object(Bucket, Key, Body)`` on the service's own S3 client.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from PIL import Image
from urllib3 import encode_multipart_formdata

from chalicelib.config import Settings
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService
from chalicelib.validation import parse_upload
from scripts.emulator import DUMMY_CREDENTIALS, start_moto_server

BUCKET = TABLE = "bench-uploads"
#: Target image sizes (bytes) and their labels.
SIZES = ((100 * 1000, "100 KB"), (1000 * 1000, "1 MB"), (5 * 1000 * 1000, "5 MB"))
_FIELDS = (("user_id", "bench"), ("title", "Bench upload"), ("tags", "bench,upload"))


def noisy_jpeg(target_bytes: int) -> tuple[bytes, tuple[int, int]]:
    """A JPEG of about ``target_bytes`` (within 15 %) and its size in pixels.

    Gaussian noise over a gradient at quality 90 compresses like a photo (~0.6 bytes
    a pixel), so the size, the pixel count and the decode time are all realistic.
    """
    width = max(16, int((target_bytes / 0.6 * 4 / 3) ** 0.5))
    for _ in range(6):
        height = width * 3 // 4
        noise = Image.effect_noise((width, height), 64)
        gradient = Image.linear_gradient("L").resize((width, height))
        image = Image.merge("RGB", (noise, gradient, Image.blend(noise, gradient, 0.5)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        if abs(len(data) - target_bytes) <= 0.15 * target_bytes:
            return data, (width, height)
        width = max(16, int(width * (target_bytes / len(data)) ** 0.5))
    return data, (width, height)


@dataclass
class UploadResult:
    """One image size. Times are medians in milliseconds; memory is the peak of Python
    allocations during one call (``tracemalloc``) divided by the image size."""

    label: str
    image_bytes: int
    pixels: tuple[int, int]
    service_ms: float
    bare_ms: float
    service_peak_x: float
    bare_peak_x: float
    json_ms: float
    json_peak_x: float
    phases_ms: dict[str, float]

    @property
    def time_ratio(self) -> float:
        """Service upload time over bare ``put_object`` time."""
        return self.service_ms / self.bare_ms

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON object."""
        return {
            "label": self.label,
            "image_bytes": self.image_bytes,
            "pixels": list(self.pixels),
            "service_ms": round(self.service_ms, 2),
            "bare_put_object_ms": round(self.bare_ms, 2),
            "time_ratio": round(self.time_ratio, 3),
            "service_peak_x": round(self.service_peak_x, 3),
            "bare_put_object_peak_x": round(self.bare_peak_x, 3),
            "json_form_ms": round(self.json_ms, 2),
            "json_form_time_ratio": round(self.json_ms / self.bare_ms, 3),
            "json_form_peak_x": round(self.json_peak_x, 3),
            "service_phases_ms_median": {k: round(v, 2) for k, v in self.phases_ms.items()},
        }


@contextlib.contextmanager
def _emulator_environment(endpoint_url: str) -> Iterator[None]:
    """boto3's endpoint and dummy credentials for the moto server, restored after."""
    with mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint_url}):
        yield


def _peak_bytes(action: Callable[[], Callable[[], None]]) -> int:
    """Peak Python allocations (bytes) made while ``action`` runs (then undoes it)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        floor = tracemalloc.get_traced_memory()[0]
        undo = action()
        peak = tracemalloc.get_traced_memory()[1] - floor
    finally:
        tracemalloc.stop()
    undo()
    return peak


def measure_uploads(runs: int) -> list[UploadResult]:
    """For each of :data:`SIZES`: median of ``runs`` timed runs (after one warm-up) of
    the service's multipart upload, the JSON/base64 upload and a bare ``put_object``,
    interleaved; then one ``tracemalloc`` run of each. Each upload is deleted after its
    run (untimed), so every run meets the same, nearly empty bucket and table: moto's
    TransactWriteItems copies the whole table, and would slow down as it fills."""
    server = start_moto_server()
    try:
        with _emulator_environment(server.endpoint_url):
            settings = Settings(
                bucket_name=BUCKET, table_name=TABLE, token_secret="b" * 32, s3_path_style=True
            )
            clients = AwsClients.from_settings(settings)
            service = ImageService.from_settings(settings, clients)
            service.storage.create_bucket()
            create_table(clients.dynamodb, TABLE)
            return [_measure_size(service, clients, runs, *size) for size in SIZES]
    finally:
        server.stop()


def _measure_size(
    service: ImageService, clients: AwsClients, runs: int, target: int, label: str
) -> UploadResult:
    data, pixels = noisy_jpeg(target)
    form_body, form_type = encode_multipart_formdata(
        [("file", ("photo.jpg", data, "image/jpeg")), *_FIELDS]
    )
    json_body = json.dumps(
        {
            "image_base64": base64.b64encode(data).decode(),
            "filename": "photo.jpg",
            **dict(_FIELDS),
        }
    ).encode()
    # Parsing is measured, not the route's limit: 5 MB is over MAX_REQUEST_BYTES (such an
    # image goes through POST /uploads on AWS), so the bench admits its own bodies.
    limit = max(len(form_body), len(json_body))
    keys = iter(range(10**9))

    phases = _PhaseTimer(clients)

    def service_form() -> Callable[[], None]:
        with phases.span("parse_upload"):
            request = parse_upload(form_body, form_type, max_request_bytes=limit)
        record = service.upload(request)
        return lambda: service.delete(record.image_id, record.user_id)

    def service_json() -> Callable[[], None]:
        record = service.upload(
            parse_upload(json_body, "application/json", max_request_bytes=limit)
        )
        return lambda: service.delete(record.image_id, record.user_id)

    def bare() -> Callable[[], None]:
        key = f"bare/{next(keys)}.jpg"
        clients.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return lambda: clients.s3.delete_object(Bucket=BUCKET, Key=key)

    samples: dict[str, list[float]] = {"form": [], "json": [], "bare": []}
    for run in range(runs + 1):
        for name, action in (("form", service_form), ("bare", bare), ("json", service_json)):
            phases.recording = name == "form" and run > 0
            began = time.perf_counter()
            undo = action()
            seconds = time.perf_counter() - began
            if phases.recording:
                phases.close_run(seconds)
            phases.recording = False
            if run:  # the first round warms connections and caches up
                samples[name].append(seconds)
            undo()  # every run finds the bucket and the table as the first did
    return UploadResult(
        label=label,
        image_bytes=len(data),
        pixels=pixels,
        service_ms=statistics.median(samples["form"]) * 1000,
        bare_ms=statistics.median(samples["bare"]) * 1000,
        service_peak_x=_peak_bytes(service_form) / len(data),
        bare_peak_x=_peak_bytes(bare) / len(data),
        json_ms=statistics.median(samples["json"]) * 1000,
        json_peak_x=_peak_bytes(service_json) / len(data),
        phases_ms=phases.medians_ms(),
    )


class _PhaseTimer:
    """Where the service's upload time goes, per run: ``parse_upload``, the S3 put and
    the DynamoDB calls (botocore ``before-call``/``after-call`` hooks on the service's
    clients), and ``other`` (Pillow decode, SHA-256, building the record)."""

    def __init__(self, clients: AwsClients) -> None:
        self.recording = False
        self._current: dict[str, float] = {}
        self._runs: list[dict[str, float]] = []
        self._started: dict[str, float] = {}
        for client, service_id, phase in (
            (clients.s3, "s3", "s3_put"),
            (clients.dynamodb, "dynamodb", "dynamodb"),
        ):
            events = client.meta.events
            events.register(f"before-call.{service_id}", self._start_hook(phase))
            events.register(f"after-call.{service_id}", self._stop_hook(phase))

    def _start_hook(self, phase: str) -> Callable[..., None]:
        def hook(**_: Any) -> None:
            self._started[phase] = time.perf_counter()

        return hook

    def _stop_hook(self, phase: str) -> Callable[..., None]:
        def hook(**_: Any) -> None:
            began = self._started.pop(phase, None)
            if self.recording and began is not None:
                self._add(phase, time.perf_counter() - began)

        return hook

    def _add(self, phase: str, seconds: float) -> None:
        self._current[phase] = self._current.get(phase, 0.0) + seconds

    @contextlib.contextmanager
    def span(self, phase: str) -> Iterator[None]:
        """Time the ``with`` block as ``phase`` (when recording)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            if self.recording:
                self._add(phase, time.perf_counter() - began)

    def close_run(self, total: float) -> None:
        """End one run that took ``total`` seconds; the rest of it is ``other``."""
        self._current["other"] = total - sum(self._current.values())
        self._runs.append(self._current)
        self._current = {}

    def medians_ms(self) -> dict[str, float]:
        """Median milliseconds of each phase over the recorded runs."""
        names = ("parse_upload", "s3_put", "dynamodb", "other")
        return {
            name: statistics.median(run.get(name, 0.0) for run in self._runs) * 1000
            for name in names
            if self._runs
        }
