"""Direct uploads: the API calls around the transfer, the transfer, ingest's memory.

One moto server (``scripts.emulator``, real HTTP on loopback) plays S3 and DynamoDB.
For each size (1, 5, 20 and 50 MB; 20 and 100 KB in ``--direct-upload-smoke``) a
seeded noisy PNG is written to a temporary file, then ``runs`` rounds (3 from 20 MB):

- **service**: ``parse_upload_start`` + ``ImageService.uploads.start`` (what the
  ``POST /uploads`` route runs), the client's POST of the file with the returned
  presigned POST (``requests``, the body streamed from disk in 1 MiB chunks), then
  ``ImageService.uploads.complete``. The POST is made :data:`TRANSFER_PAIRS` times
  (the same bytes to the same key), each paired with a bare POST, alternating which
  goes first; a round's transfer times are the medians of its pairs. Inside
  ``complete``, ``imaging.process`` (decode, renditions) is timed as *processing*,
  ``ImageStorage.head`` as *S3 HEAD* (constant on S3; moto computes the object's MD5
  ETag on its first HEAD), ``ImageStorage.get`` (the GET of the object) as *S3 read* and
  ``Ingest._store`` (the PUTs of the original and the renditions) as *S3 store*.
  *API calls* = start + complete - processing, per round.
- **bare**: ``generate_presigned_post`` for another key with the same conditions
  (``content-length-range`` pinned to the size, as the service's policy is when
  ``size_bytes`` is declared), and the same client code posting the same file.

Then ingest's peak memory, once per size, two ways: Python allocations during
``complete`` in this process (``tracemalloc``; Pillow's pixel buffers are outside the
Python heap and not in it), and the resident set high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs`` just before) of a child process that runs
``complete`` alone: everything, pixels included. The target is judged on the latter.
Every upload is deleted after its run, so every run meets the same, nearly empty bucket
and table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from unittest import mock

import requests
from PIL import Image

from chalicelib import imaging
from chalicelib.config import Settings
from chalicelib.ingest import Ingested
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService
from chalicelib.validation import parse_upload_start
from scripts.emulator import DUMMY_CREDENTIALS, PROJECT_DIR, start_moto_server

BUCKET = TABLE = "bench-direct-uploads"
USER = "bench"
#: Image sizes (bytes) and their labels: the issue's, and the smoke run's.
SIZES = (
    (1_000_000, "1 MB"),
    (5_000_000, "5 MB"),
    (20_000_000, "20 MB"),
    (50_000_000, "50 MB"),
)
SMOKE_SIZES = ((20_000, "20 KB"), (100_000, "100 KB"))
#: Sizes from this many bytes on get at most :data:`LARGE_RUNS` timed runs.
LARGE_BYTES = 20_000_000
LARGE_RUNS = 3
#: Targets from the issue.
MAX_API_GROWTH = 1.10
MAX_TRANSFER_RATIO = 1.05
MAX_INGEST_PEAK_X = 3.0
#: Paired (service form, bare) POSTs per round: the transfer is the noisiest figure.
TRANSFER_PAIRS = 3
#: Bytes read from the file per chunk of the streamed POST body.
CHUNK_BYTES = 1 << 20

P = ParamSpec("P")
R = TypeVar("R")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This section's flags on ``bench.run``'s command line."""
    parser.add_argument(
        "--direct-upload-runs", type=int, default=5, help="timed runs per size (3 at 50 MB)"
    )
    parser.add_argument(
        "--direct-upload-smoke", action="store_true", help="direct uploads of 20 and 100 KB"
    )
    parser.add_argument(
        "--skip-direct-upload", action="store_true", help="(also skipped by --skip-upload)"
    )


def noisy_png(target_bytes: int, seed: int) -> tuple[bytes, tuple[int, int]]:
    """A PNG of ``target_bytes`` (within 1 % above 10 KB) and its size in pixels.

    Seeded random RGB noise does not compress, so the file is ~3 bytes a pixel (a
    50 MB image is 16.7 megapixels, within ``MAX_IMAGE_PIXELS``), and decoding reads
    every byte: a worst case for the bytes moved per pixel, a realistic pixel count.
    """
    rng = random.Random(seed)
    width = max(8, int((target_bytes / 3 * 4 / 3) ** 0.5))
    height = max(6, int(target_bytes / 3 / width))
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), (width, height)


class MultipartFile:
    """A ``multipart/form-data`` body of ``fields`` and then the file at ``path`` as the
    part ``file_field``, streamed: iterating yields the head, the file in chunks of
    ``chunk_bytes`` read from disk, and the tail. ``len()`` is the body's size in bytes,
    so ``requests`` sends a ``Content-Length`` (S3 refuses chunked POSTs), not the body
    in memory."""

    def __init__(
        self,
        fields: dict[str, str],
        file_field: str,
        path: Path,
        content_type: str,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        boundary = uuid.uuid4().hex
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{path.name}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        self._head = head.encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._path = path
        self._chunk_bytes = chunk_bytes
        self.content_type = f"multipart/form-data; boundary={boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._path.stat().st_size + len(self._tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        with self._path.open("rb") as file:
            while chunk := file.read(self._chunk_bytes):
                yield chunk
        yield self._tail


def post_file(session: requests.Session, post: dict[str, Any], path: Path) -> None:
    """The client's side: POST ``path`` with the presigned POST ``post`` (``url`` and
    ``fields``; the file goes in the part ``file``), streamed from disk.

    Raises:
        requests.HTTPError: S3 (the emulator) refused it.
    """
    body = MultipartFile(post["fields"], "file", path, "image/png")
    response = session.post(post["url"], data=body, headers={"Content-Type": body.content_type})
    response.raise_for_status()


class Phases:
    """Seconds spent in named calls, summed until :meth:`take`."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def timed(self, name: str, function: Callable[P, R]) -> Callable[P, R]:
        """``function``, adding its wall time (seconds) to ``name``."""

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - began
                self._seconds[name] = self._seconds.get(name, 0.0) + elapsed

        return call

    def take(self) -> dict[str, float]:
        """The sums so far (seconds), and start again from zero."""
        taken, self._seconds = self._seconds, {}
        return taken


@dataclass
class Run:
    """One timed round of one size, in seconds."""

    start: float
    transfer: float
    complete: float
    processing: float
    s3_head: float
    s3_read: float
    s3_store: float
    bare: float

    @property
    def api(self) -> float:
        """The API calls around the transfer: start + complete - processing."""
        return self.start + self.complete - self.processing

    @property
    def fixed(self) -> float:
        """What of :attr:`api` neither moves the image's bytes nor waits for moto to
        hash them (DynamoDB, checks, SHA-256, delete): api - HEAD - S3 read - S3 store."""
        return self.api - self.s3_head - self.s3_read - self.s3_store


@dataclass
class DirectUploadResult:
    """One image size: medians of the runs in milliseconds; peaks as multiples of the
    image size (``None``: not measured)."""

    label: str
    image_bytes: int
    pixels: tuple[int, int]
    runs: int
    start_ms: float
    complete_ms: float
    processing_ms: float
    s3_head_ms: float
    s3_read_ms: float
    s3_store_ms: float
    api_ms: float
    fixed_ms: float
    transfer_ms: float
    bare_post_ms: float
    tracemalloc_peak_x: float | None
    rss_peak_x: float | None

    @classmethod
    def from_runs(
        cls,
        label: str,
        image_bytes: int,
        pixels: tuple[int, int],
        runs: Sequence[Run],
        peaks: tuple[float | None, float | None],
    ) -> DirectUploadResult:
        """Medians (milliseconds) of ``runs``; ``peaks`` (tracemalloc, RSS) in multiples."""

        def median_ms(value: Callable[[Run], float]) -> float:
            return statistics.median(value(run) for run in runs) * 1000

        return cls(
            label=label,
            image_bytes=image_bytes,
            pixels=pixels,
            runs=len(runs),
            start_ms=median_ms(lambda r: r.start),
            complete_ms=median_ms(lambda r: r.complete),
            processing_ms=median_ms(lambda r: r.processing),
            s3_head_ms=median_ms(lambda r: r.s3_head),
            s3_read_ms=median_ms(lambda r: r.s3_read),
            s3_store_ms=median_ms(lambda r: r.s3_store),
            api_ms=median_ms(lambda r: r.api),
            fixed_ms=median_ms(lambda r: r.fixed),
            transfer_ms=median_ms(lambda r: r.transfer),
            bare_post_ms=median_ms(lambda r: r.bare),
            tracemalloc_peak_x=peaks[0],
            rss_peak_x=peaks[1],
        )

    @property
    def transfer_ratio(self) -> float:
        """The client's POST with the service's form over the bare presigned POST."""
        return self.transfer_ms / self.bare_post_ms

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON object (times rounded to 0.01 ms)."""
        body = asdict(self)
        body["pixels"] = list(self.pixels)
        for key, value in body.items():
            if isinstance(value, float):
                body[key] = round(value, 2 if key.endswith("_ms") else 3)
        body["transfer_ratio"] = round(self.transfer_ratio, 3)
        return body


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """This section's targets from ``results["direct_upload"]`` (the JSON rows):
    ``[{"target", "passed", "measured"}]``, empty when the section did not run."""
    rows = results.get("direct_upload") or []
    if not rows:
        return []
    first, last = rows[0], rows[-1]
    growth = last["api_ms"] / first["api_ms"]
    fixed_growth = last["fixed_ms"] / first["fixed_ms"]
    targets = [
        {
            "target": f"direct upload API calls (start + complete - processing) at "
            f"{last['label']} within {MAX_API_GROWTH - 1:.0%} of {first['label']}",
            "passed": growth <= MAX_API_GROWTH,
            "measured": f"{growth:.2f}x ({last['api_ms']:.1f} vs {first['api_ms']:.1f} ms; "
            f"without the object's HEAD, GET and PUTs {fixed_growth:.2f}x)",
        },
        {
            "target": f"direct upload: the client's POST within "
            f"{MAX_TRANSFER_RATIO - 1:.0%} of a bare presigned POST",
            "passed": all(row["transfer_ratio"] <= MAX_TRANSFER_RATIO for row in rows),
            "measured": ", ".join(f"{row['label']} {row['transfer_ratio']:.3f}x" for row in rows),
        },
    ]
    peaks = [(row["label"], row["rss_peak_x"] or row["tracemalloc_peak_x"]) for row in rows]
    measure = "RSS" if all(row["rss_peak_x"] is not None for row in rows) else "tracemalloc"
    targets.append(
        {
            "target": f"direct upload: ingest peak memory ({measure}) <= "
            f"{MAX_INGEST_PEAK_X}x the image size",
            "passed": all(peak is not None and peak <= MAX_INGEST_PEAK_X for _, peak in peaks),
            "measured": ", ".join(f"{label} {peak:.2f}x" for label, peak in peaks if peak),
        }
    )
    return targets


def run(args: argparse.Namespace, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    """The section for ``bench.run``: the JSON rows, one per size."""
    sizes = SMOKE_SIZES if args.direct_upload_smoke else SIZES
    labels = ", ".join(label for _, label in sizes)
    progress(f"direct uploads: {labels} against a bare presigned POST …")
    return [r.to_json() for r in measure_direct_uploads(sizes, args.direct_upload_runs)]


def _settings() -> Settings:
    return Settings(bucket_name=BUCKET, table_name=TABLE, token_secret="b" * 32, s3_path_style=True)


@contextlib.contextmanager
def _emulator_environment(endpoint_url: str) -> Iterator[None]:
    """boto3's endpoint and dummy credentials for the moto server, restored after."""
    with mock.patch.dict(os.environ, {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint_url}):
        yield


def measure_direct_uploads(
    sizes: Sequence[tuple[int, str]], runs: int, seed: int = 10
) -> list[DirectUploadResult]:
    """Each of ``sizes`` (bytes, label) as the module docstring says; ``runs`` timed
    runs per size (at most :data:`LARGE_RUNS` from :data:`LARGE_BYTES`), after one
    untimed warm-up upload of a small image."""
    server = start_moto_server()
    try:
        with (
            _emulator_environment(server.endpoint_url),
            tempfile.TemporaryDirectory() as tmp,
            requests.Session() as session,
        ):
            settings = _settings()
            clients = AwsClients.from_settings(settings)
            service = ImageService.from_settings(settings, clients)
            service.storage.create_bucket()
            create_table(clients.dynamodb, TABLE)
            bench = _Bench(service, clients, session, Path(tmp), server.endpoint_url)
            warm = bench.write(*noisy_png(20_000, seed), "warm-up")
            bench.service_round(warm, 1)
            results = []
            for number, (target, label) in enumerate(sizes):
                data, pixels = noisy_png(target, seed + number + 1)
                path = bench.write(data, pixels, label)
                count = min(runs, LARGE_RUNS) if target >= LARGE_BYTES else runs
                timed = [bench.service_round(path, TRANSFER_PAIRS) for _ in range(max(1, count))]
                peaks = (bench.tracemalloc_peak(path) / len(data), bench.rss_peak(path, len(data)))
                results.append(DirectUploadResult.from_runs(label, len(data), pixels, timed, peaks))
                path.unlink()
            return results
    finally:
        server.stop()


class _Bench:
    """The two sides' rounds and the memory runs on one service and emulator."""

    def __init__(
        self,
        service: ImageService,
        clients: AwsClients,
        session: requests.Session,
        tmp: Path,
        endpoint_url: str,
    ) -> None:
        self.service = service
        self.clients = clients
        self.session = session
        self.tmp = tmp
        self.endpoint_url = endpoint_url
        self.phases = Phases()
        self._bare_keys = iter(range(10**9))
        self._process = self.phases.timed("processing", imaging.process)
        # Instance attributes shadow the methods: only this service is instrumented.
        storage, ingest = service.storage, service.ingest
        storage.head = self.phases.timed("s3_head", storage.head)  # type: ignore[method-assign]
        storage.get = self.phases.timed("s3_read", storage.get)  # type: ignore[method-assign]
        ingest._store = self.phases.timed("s3_store", ingest._store)  # type: ignore[method-assign]

    def write(self, data: bytes, pixels: tuple[int, int], label: str) -> Path:
        """``data`` as a file to post (named after ``label``)."""
        path = self.tmp / f"{label.replace(' ', '')}-{pixels[0]}x{pixels[1]}.png"
        path.write_bytes(data)
        return path

    def start(self, path: Path) -> dict[str, Any]:
        """``POST /uploads``'s work: parse the body, write the pending upload, presign."""
        body = {
            "user_id": USER,
            "title": "Bench direct upload",
            "tags": ["bench", "direct"],
            "filename": path.name,
            "content_type": "image/png",
            "size_bytes": path.stat().st_size,
        }
        limit = self.service.settings.max_image_bytes
        start = parse_upload_start(json.dumps(body).encode(), limit, default_user_id=USER)
        return self.service.uploads.start(start)

    def service_round(self, path: Path, pairs: int) -> Run:
        """start, ``pairs`` POSTs each paired with a bare POST, complete (timed), then
        delete the image (untimed)."""
        began = time.perf_counter()
        started = self.start(path)
        start_s = time.perf_counter() - began
        transfers, bares = [], []
        for pair in range(max(1, pairs)):
            # Alternate which side goes first, so neither always meets a warmer (or
            # busier) emulator.
            if pair % 2:
                bares.append(self.bare_post(path))
            transfers.append(self._timed_post(started["upload"], path))
            if not pair % 2:
                bares.append(self.bare_post(path))
        self.phases.take()
        with mock.patch.object(imaging, "process", self._process):
            began = time.perf_counter()
            ingested = self.service.uploads.complete(started["upload_id"], USER)
            complete_s = time.perf_counter() - began
        assert isinstance(ingested, Ingested), "nothing else processes the bench's uploads"
        phases = self.phases.take()
        self.service.delete(ingested.record.image_id, USER)
        return Run(
            start=start_s,
            transfer=statistics.median(transfers),
            complete=complete_s,
            processing=phases.get("processing", 0.0),
            s3_head=phases.get("s3_head", 0.0),
            s3_read=phases.get("s3_read", 0.0),
            s3_store=phases.get("s3_store", 0.0),
            bare=statistics.median(bares),
        )

    def _timed_post(self, post: dict[str, Any], path: Path) -> float:
        began = time.perf_counter()
        post_file(self.session, post, path)
        return time.perf_counter() - began

    def bare_post(self, path: Path) -> float:
        """A bare presigned POST of ``path`` (same conditions, another key); seconds."""
        key = f"bare/{next(self._bare_keys)}"
        size = path.stat().st_size
        post = self.clients.s3_presigner.generate_presigned_post(
            Bucket=BUCKET,
            Key=key,
            Conditions=[["content-length-range", size, size]],
            ExpiresIn=self.service.settings.upload_expires_seconds,
        )
        seconds = self._timed_post(post, path)
        self.clients.s3.delete_object(Bucket=BUCKET, Key=key)
        return seconds

    def tracemalloc_peak(self, path: Path) -> int:
        """Peak Python allocations (bytes) during one ``complete`` of ``path``."""
        started = self.start(path)
        post_file(self.session, started["upload"], path)
        tracemalloc.start()
        try:
            floor = tracemalloc.get_traced_memory()[0]
            ingested = self.service.uploads.complete(started["upload_id"], USER)
            peak = tracemalloc.get_traced_memory()[1] - floor
        finally:
            tracemalloc.stop()
        assert isinstance(ingested, Ingested), "nothing else processes the bench's uploads"
        self.service.delete(ingested.record.image_id, USER)
        return peak

    def rss_peak(self, path: Path, image_bytes: int) -> float | None:
        """Resident set growth of a child process during one ``complete`` of ``path``,
        as a multiple of ``image_bytes``; None when the child cannot measure it."""
        started = self.start(path)
        post_file(self.session, started["upload"], path)
        child = subprocess.run(
            [sys.executable, "-m", "bench.direct_upload", "--rss-child", started["upload_id"]],
            capture_output=True,
            text=True,
            env={**os.environ, "AWS_ENDPOINT_URL": self.endpoint_url},
            cwd=PROJECT_DIR,
            check=False,
        )
        with contextlib.suppress(Exception):
            upload = self.service.uploads.status(started["upload_id"])
            self.service.delete(upload["image_id"], USER)
        if child.returncode != 0:
            print(child.stderr, file=sys.stderr)
            return None
        grown: int | None = json.loads(child.stdout)["rss_peak_bytes"]
        return None if grown is None else grown / image_bytes


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


def rss_child(upload_id: str) -> int | None:
    """In a fresh process: complete ``upload_id``; the growth of the resident set's
    high-water mark (bytes) over the resident set just before ``complete`` (after a
    warm-up of the clients and Pillow), or None when the mark cannot be reset."""
    from PIL import PngImagePlugin, WebPImagePlugin  # noqa: F401 - imported before, not during

    service = ImageService.from_settings(_settings())
    service.storage.check()
    service.metadata.get_upload(upload_id)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    except OSError:
        return None
    before = _status_kib("VmRSS")
    service.uploads.complete(upload_id, USER)
    peak = _status_kib("VmHWM")
    return (peak - before) * 1024


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rss-child"]:
        print(json.dumps({"rss_peak_bytes": rss_child(sys.argv[2])}))
    else:
        sys.exit("usage: python -m bench.direct_upload --rss-child UPLOAD_ID (bench.run runs it)")
