"""`make bench`: what listing, uploading and starting the service cost, in one run.

1. Listing (moto in-process, ``mock_aws``): seeds a skewed data set through the
   metadata layer, pages through nine access patterns with the service's own listing
   code, and answers the same questions the common way (Scan + filter) on a
   one-item-per-image table in the same emulator. Ratios are service / baseline.
2. Upload (moto's server, real HTTP): the service's upload against a bare
   ``put_object`` of the same bytes, at 100 KB, 1 MB and 5 MB.
3. Cold start: ``python -X importtime -c "import app"`` in fresh processes, and the
   size of the ``deployment.zip`` that ``chalice package`` builds.
4. Image processing (``bench/imaging.py``): ``chalicelib.imaging.process`` against
   libvips' ``vipsthumbnail`` on a 12 MP JPEG, a 24 MP PNG, a HEIC and an animated GIF;
   then WebP ``method`` 2..6: CPU, rendition bytes and SSIM (``bench/webp_method.py``).
5. Direct uploads (moto's server, real HTTP; ``bench/direct_upload.py``): ``POST
   /uploads`` and ``complete`` around the client's presigned POST, against a bare
   presigned POST of the same bytes, at 1, 5, 20 and 50 MB; ingest's peak memory; then
   processing CPU per upload against ``make run``'s processes, direct upload with
   ``complete`` against ``POST /images`` (``bench/processing_cpu.py``).
6. Delivery (``make run``'s script in headless Chromium; ``bench/delivery.py``): image
   bytes and requests of a 40-image gallery's first visit, reload and scroll back, with
   the cache window and with a new URL per listing; the same listing from two
   processes; listing JSON bytes per item.
7. Scale (``bench/scale.py``): the service's key functions under 10,000 uploads/s
   through a model of DynamoDB's partitions, the layout before sharding against today's.
8. A library (``make run``'s stack; ``bench/library.py``): 5,000 uploads, the rate and
   the emulator's RSS over the first and the last 500.

Prints a Markdown report and writes ``results.md`` and ``results.json`` (``--out-dir``,
default ``bench/``). Exit status 1 when the service gave a wrong answer or issued a
Scan; a missed performance target is reported (``MISS``) and, with ``--strict``, also
exits 1.

Usage: ``python -m bench.run [--images 10000] [--users 100] [--tags 50] [--months 24]
[--limit 20] [--seed 42] [--upload-runs 7] [--cold-start-runs 5] [--skip-package]
[--skip-upload] [--skip-cold-start] [--skip-imaging] [--imaging-runs 3]
[--no-moto-speedups] [--strict] [--out-dir DIR] [--direct-upload-runs 5]
[--direct-upload-smoke] [--skip-direct-upload] [--delivery-images 40] [--skip-delivery]
[--shards 1,4,16] [--skip-scale]
[--library-images 5000] [--library-clients 4]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlencode

import boto3
from moto import mock_aws

from bench import delivery, direct_upload, library, report, scale
from bench.coldstart import measure_cold_start
from bench.dataset import (
    END,
    DatasetSpec,
    generate,
    seed_baseline_table,
    seed_service_table,
)
from bench.imaging import measure_imaging
from bench.imaging import target as imaging_goal
from bench.listing import (
    CallCounter,
    Pattern,
    ScanInRequestPath,
    Side,
    check,
    choose_patterns,
    expected_ids,
    page_through,
    scan_through,
    short_pages,
)
from bench.moto_speedups import faster_moto
from bench.processing_cpu import measure_processing_cpu
from bench.processing_cpu import target as processing_cpu_goal
from bench.upload import measure_uploads
from bench.webp_method import measure_webp_methods
from chalicelib.config import DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS, Settings
from chalicelib.keys import ShardLayout
from chalicelib.schema import create_table
from chalicelib.service import AwsClients, ImageService
from chalicelib.validation import ListQuery, parse_list_query
from scripts.emulator import DUMMY_CREDENTIALS

HERE = Path(__file__).resolve().parent
SERVICE_TABLE = "bench-images"
BASELINE_TABLE = "bench-baseline-images"
#: Targets from the issue.
MAX_READ_PER_RETURNED = 1.2
MAX_UPLOAD_TIME_RATIO_1MB = 1.5
MAX_UPLOAD_PEAK_X = 3.0
MAX_RUNTIME_S = 300.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n", 1)[0]
    )
    spec = DatasetSpec()
    parser.add_argument("--images", type=int, default=spec.images)
    parser.add_argument("--users", type=int, default=spec.users)
    parser.add_argument("--tags", type=int, default=spec.tags)
    parser.add_argument("--months", type=int, default=spec.months)
    parser.add_argument("--seed", type=int, default=spec.seed)
    parser.add_argument("--limit", type=int, default=20, help="page size (1-100)")
    parser.add_argument(
        "--shards",
        type=lambda text: sorted({int(part) for part in text.split(",")}),
        default=[1, 4, 16],
        help="feed and tag shard counts to list with, comma-separated (default 1,4,16); "
        "the largest is compared with Scan + filter",
    )
    parser.add_argument("--upload-runs", type=int, default=7, help="timed runs per size")
    parser.add_argument("--cold-start-runs", type=int, default=5, help="fresh processes")
    parser.add_argument("--skip-package", action="store_true", help="no chalice package")
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--skip-cold-start", action="store_true")
    parser.add_argument(
        "--skip-imaging", action="store_true", help="no image processing vs vipsthumbnail"
    )
    parser.add_argument("--imaging-runs", type=int, default=3, help="timed process() calls")
    parser.add_argument(
        "--no-moto-speedups",
        action="store_true",
        help="plain moto (slow beyond ~1,000 images; see bench/moto_speedups.py)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 on a missed target, not only on errors"
    )
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument(
        "--skip-scale", action="store_true", help="no partition simulation (bench/scale.py)"
    )
    direct_upload.add_arguments(parser)
    delivery.add_arguments(parser)
    library.add_arguments(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.limit <= 100:
        parser.error("--limit must be 1-100")
    if not all(1 <= count <= 64 for count in args.shards):
        parser.error("--shards must be 1-64")
    if args.images < 1 or args.users < 1 or args.tags < 1 or args.months < 3:
        parser.error("--images, --users and --tags must be positive, --months at least 3")
    return args


def progress(message: str) -> None:
    """One progress line on stderr (stdout carries the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def in_process_aws() -> Iterator[None]:
    """moto in-process, with dummy credentials and no endpoint variables (restored after)."""
    with mock.patch.dict(os.environ, DUMMY_CREDENTIALS):
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
            os.environ.pop(name, None)
        with mock_aws():
            yield


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """No garbage collection inside the block; afterwards, everything alive (the
    emulator's ~10^6 objects holding the tables) is moved out of the collector's sight
    (``gc.freeze``), so a full collection does not stall one page for seconds."""
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


def run_listing(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Seed, page through every pattern both ways, record figures and wrong answers.

    The service's table is seeded once per shard count of ``--shards`` (feed and tags
    split that many ways); every count's page-through is checked against the answer
    computed from the records, and the largest count's is compared with Scan + filter
    (``results["listing"]``). ``results["listing_shards"]`` holds, per count, the items
    read per item returned and the calls per page of every pattern.
    """
    spec = DatasetSpec(args.images, args.users, args.tags, args.months, args.seed)
    records = generate(spec)
    patterns = choose_patterns(records, spec.months)
    speedups = contextlib.nullcontext() if args.no_moto_speedups else faster_moto()
    with in_process_aws(), speedups:
        loader = boto3.client("dynamodb")
        began = time.perf_counter()
        progress(f"seeding {spec.images} images for Scan + filter …")
        with frozen_heap():
            seed_baseline_table(loader, BASELINE_TABLE, records)
        results["run"]["seed_s"] = time.perf_counter() - began
        results["listing_shards"] = []
        for count in args.shards:
            table = f"{SERVICE_TABLE}-{count}"
            settings = Settings(
                bucket_name="bench-images",
                table_name=table,
                token_secret="b" * 32,
                feed_shards=count,
                tag_shards=count,
            )
            clients = AwsClients.from_settings(settings)
            counter = CallCounter()
            counter.install(clients.dynamodb, refuse_scans=True)
            service = ImageService.from_settings(settings, clients)
            seeding = time.perf_counter()
            create_table(loader, table)
            progress(f"{count} shards: seeding through ImageMetadataStore.put_image …")
            with frozen_heap():
                seed_service_table(loader, table, records, settings.layout)
            results["run"]["seed_s"] += time.perf_counter() - seeding
            # Warm the paths up (client endpoints, botocore models, moto's caches).
            service.list_images(_query(args.limit))
            compare = count == args.shards[-1]
            if compare:
                results["dataset"]["service_items"] = loader.describe_table(TableName=table)[
                    "Table"
                ]["ItemCount"]
                loader.scan(TableName=BASELINE_TABLE, Limit=args.limit)
            rows, per_pattern = [], []
            for pattern in patterns:
                ours = page_through(service, counter, pattern.params, args.limit)
                expected = expected_ids(pattern, records)
                per_pattern.append(_shard_row(pattern, ours, args.limit))
                if not compare:
                    if ours.ids != expected:
                        results["problems"].append(
                            f"{pattern.name} at {count} shards: not the expected images"
                        )
                    continue

                def presign(
                    key: str, service: ImageService = service, settings: Settings = settings
                ) -> str:
                    return service.urls.url(key, datetime.now(UTC), settings.url_expires_seconds)

                theirs = scan_through(loader, BASELINE_TABLE, pattern.params, args.limit, presign)
                results["problems"] += check(pattern, ours, theirs, expected)
                rows.append(_listing_row(pattern, ours, theirs, args.limit))
                progress(
                    f"{pattern.name}: {ours.returned} returned, read {ours.read} "
                    f"(Scan: {theirs.read}) in {ours.seconds:.2f} s (Scan: {theirs.seconds:.2f} s)"
                )
            results["listing_shards"].append({"shards": count, "patterns": per_pattern})
            progress(
                f"{count} shards: read/returned "
                + ", ".join(f"{r['pattern']} {r['read_per_returned']:.2f}" for r in per_pattern)
            )
            if compare:
                results["listing"] = rows
                results["scans_in_request_path"] = counter.scans


def _shard_row(pattern: Pattern, ours: Side, limit: int) -> dict[str, Any]:
    return {
        "pattern": pattern.name,
        "plain": pattern.without_title is None,
        "returned": ours.returned,
        "read_per_returned": ours.read / max(ours.returned, 1),
        "calls_per_page": ours.calls / max(len(ours.page_sizes), 1),
        "short_pages": short_pages(ours, limit),
    }


def _query(limit: int) -> ListQuery:
    return parse_list_query({"limit": [str(limit)]})


def _listing_row(pattern: Pattern, ours: Side, theirs: Side, limit: int) -> dict[str, Any]:
    return {
        "pattern": pattern.name,
        "query": urlencode(pattern.params),
        "without_title": pattern.without_title,
        "service": ours.to_json(),
        "baseline": theirs.to_json(),
        "read_per_returned": ours.read / max(ours.returned, 1),
        "read_ratio": ours.read / theirs.read if theirs.read else None,
        "time_ratio": ours.seconds / theirs.seconds if theirs.seconds else None,
        "short_pages": short_pages(ours, limit),
    }


def evaluate(results: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Each target of the issue: ``{"target", "passed", "measured"}``."""
    targets: list[dict[str, Any]] = []

    def add(target: str, passed: bool, measured: str) -> None:
        targets.append({"target": target, "passed": passed, "measured": measured})

    listing = results.get("listing") or []
    by_name = {row["pattern"]: row for row in listing}
    plain = [row for row in listing if not row["without_title"]]
    if plain:
        misses = [r for r in plain if r["read_per_returned"] > MAX_READ_PER_RETURNED]
        worst = max(plain, key=lambda r: r["read_per_returned"])
        add(
            f"items read per item returned <= {MAX_READ_PER_RETURNED} (all but title search)",
            not misses,
            "; ".join(f"{r['pattern']} {r['read_per_returned']:.3f}" for r in misses)
            or f"worst: {worst['pattern']} {worst['read_per_returned']:.3f}",
        )
    for entry in results.get("listing_shards") or []:
        plain_rows = [row for row in entry["patterns"] if row["plain"]]
        worst = max(plain_rows, key=lambda row: row["read_per_returned"])
        shorts = [row["pattern"] for row in entry["patterns"] if row["short_pages"]]
        add(
            f"{entry['shards']} shards: items read per item returned <= "
            f"{MAX_READ_PER_RETURNED} (all but title search), full pages",
            worst["read_per_returned"] <= MAX_READ_PER_RETURNED and not shorts,
            f"worst: {worst['pattern']} {worst['read_per_returned']:.3f}"
            + (f"; short pages: {', '.join(shorts)}" if shorts else ""),
        )
    for row in listing:
        narrowest = by_name.get(row["without_title"] or "")
        if narrowest is not None:
            read, limit_read = row["service"]["read"], narrowest["service"]["read"]
            add(
                f"{row['pattern']}: reads no more than the narrowest Query "
                f"({narrowest['pattern']})",
                read <= limit_read,
                f"{read} read vs {limit_read}",
            )
    if listing:
        scans = results.get("scans_in_request_path", 0)
        add("zero Scans in any request path", scans == 0, f"{scans} Scans")
        short = {r["pattern"]: r["short_pages"] for r in listing if r["short_pages"]}
        add(
            f"full pages: every page but the last has exactly {limit} items",
            not short,
            "; ".join(f"{name}: pages {pages[:5]}" for name, pages in short.items())
            or f"{sum(r['service']['pages'] for r in listing)} pages checked",
        )
    uploads = {item["label"]: item for item in results.get("upload") or []}
    if "1 MB" in uploads:
        ratio = uploads["1 MB"]["time_ratio"]
        add(
            f"upload time <= {MAX_UPLOAD_TIME_RATIO_1MB}x a bare put_object at 1 MB",
            ratio <= MAX_UPLOAD_TIME_RATIO_1MB,
            f"{ratio:.2f}x",
        )
    if uploads:
        peaks = {label: item["service_peak_x"] for label, item in uploads.items()}
        add(
            f"upload peak memory <= {MAX_UPLOAD_PEAK_X}x the image size",
            max(peaks.values()) <= MAX_UPLOAD_PEAK_X,
            ", ".join(f"{label} {peak:.2f}x" for label, peak in peaks.items()),
        )
    imaging_target = imaging_goal(results["imaging"]) if results.get("imaging") else None
    if imaging_target is not None:
        targets.append(imaging_target)
    targets += direct_upload.evaluate(results)
    targets += delivery.evaluate(results)
    if results.get("processing_cpu"):
        targets.append(processing_cpu_goal(results["processing_cpu"]))
    if results.get("scale"):
        targets.append(results["scale"]["target"])
    targets += library.evaluate(results)
    runtime = results["run"]["runtime_s"] - results["run"].get("library_s", 0.0)
    add(
        f"whole run (without the library) under {MAX_RUNTIME_S:.0f} s",
        runtime < MAX_RUNTIME_S,
        f"{runtime:.0f} s",
    )
    return targets


def machine() -> str:
    """CPU model, core count, OS."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def software() -> str:
    """Python and the versions of the libraries that shape the figures."""
    versions = []
    for name in ("moto", "boto3", "chalice", "pillow"):
        try:
            versions.append(f"{name} {package_metadata.version(name)}")
        except package_metadata.PackageNotFoundError:
            versions.append(f"{name} missing")
    return f"Python {platform.python_version()}, " + ", ".join(versions)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status (see the module docstring)."""
    began = time.perf_counter()
    args = parse_args(argv)
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    emulator = (
        "moto in-process (mock_aws)"
        + ("" if args.no_moto_speedups else " with bench/moto_speedups.py")
        + " for listing; moto server (HTTP on loopback) for uploads"
    )
    results: dict[str, Any] = {
        "run": {
            "command": command,
            "machine": machine(),
            "software": software(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "emulator": emulator,
            "seed_s": 0.0,
        },
        "dataset": {
            "images": args.images,
            "users": args.users,
            "tags": args.tags,
            "months": args.months,
            "end": END.date().isoformat(),
            "seed": args.seed,
            "limit": args.limit,
            "service_items": 0,
        },
        "problems": [],
    }
    try:
        run_listing(args, results)
    except ScanInRequestPath as exc:
        results["problems"].append(str(exc))
        results["scans_in_request_path"] = 1
    finally:
        gc.unfreeze()
    if not args.skip_upload:
        progress("uploads: 100 KB, 1 MB, 5 MB against a bare put_object …")
        results["upload"] = [r.to_json() for r in measure_uploads(args.upload_runs)]
    if not (args.skip_upload or args.skip_direct_upload):
        results["direct_upload"] = direct_upload.run(args, progress)
        progress("processing CPU: direct upload + complete vs POST /images against make run …")
        results["processing_cpu"] = measure_processing_cpu()
    if not args.skip_cold_start:
        progress("cold start: python -X importtime -c 'import app' …")
        cold = measure_cold_start(args.cold_start_runs, package=not args.skip_package)
        results["cold_start"] = cold.to_json()
    if not args.skip_imaging:
        progress("image processing: 12 MP JPEG, 24 MP PNG, HEIC, GIF vs vipsthumbnail …")
        results["imaging"] = measure_imaging(args.imaging_runs)
        progress("WebP method 2..6: CPU, bytes, SSIM …")
        results["webp_method"] = measure_webp_methods(args.imaging_runs)
    if not args.skip_delivery:
        results["delivery"] = delivery.measure_delivery(args.delivery_images, progress)
    if not args.skip_scale:
        progress("scale: 10,000 uploads/s through a model of DynamoDB's partitions …")
        layout = ShardLayout(DEFAULT_FEED_SHARDS, DEFAULT_TAG_SHARDS)
        results["scale"] = scale.run(scale.Workload(), layout)
    library_began = time.perf_counter()
    results["library"] = library.run(args, progress)
    results["run"]["library_s"] = time.perf_counter() - library_began
    results["run"]["runtime_s"] = time.perf_counter() - began
    results["targets"] = evaluate(results, args.limit)
    markdown = report.render(results)
    print(markdown)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.md").write_text(markdown)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    missed = [t["target"] for t in results["targets"] if not t["passed"]]
    for problem in results["problems"]:
        print(f"WRONG: {problem}", file=sys.stderr)
    for target in missed:
        print(f"MISS: {target}", file=sys.stderr)
    if results["problems"] or results.get("scans_in_request_path"):
        return 1
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
