"""The benchmark's results as Markdown, rendered from the JSON document ``bench.run``
writes (so the two never disagree)."""

from __future__ import annotations

from typing import Any

from bench import scale


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole report: run facts, listing table, upload table, cold start, targets."""
    run, data = results["run"], results["dataset"]
    lines = [
        "# Benchmark results (`make bench`)",
        "",
        f"- command: `{run['command']}`",
        f"- machine: {run['machine']}",
        f"- software: {run['software']}",
        f"- date: {run['date']}; total runtime {run['runtime_s']:.0f} s "
        f"(seeding {run['seed_s']:.0f} s)",
        f"- data: {data['images']} images, {data['users']} users (Zipf-like), "
        f"{data['tags']} tags (1-5 per image, Zipf-like), {data['months']} months ending "
        f"{data['end']}, seed {data['seed']}; {data['service_items']} items in the "
        f"service's table, {data['images']} in the baseline's; page size {data['limit']}",
        f"- emulator: {run['emulator']}",
        "",
    ]
    listing = results.get("listing")
    if listing:
        lines += [
            "## Listing: a whole page-through, the service against Scan + filter",
            "",
            "*read*: items DynamoDB read (`ScannedCount`, summed over every call); *calls*: "
            "DynamoDB calls; page latencies are per `list_images` call (service) or per Scan "
            "call (baseline); ratios are service / baseline.",
            "",
        ]
        rows = []
        for row in listing:
            ours, theirs = row["service"], row["baseline"]
            rows.append(
                [
                    row["pattern"],
                    ours["returned"],
                    ours["pages"],
                    ours["calls"],
                    ours["read"],
                    f"{row['read_per_returned']:.3f}",
                    f"{ours['page_ms_median']:.1f}",
                    f"{ours['page_ms_p95']:.1f}",
                    f"{ours['total_ms']:.0f}",
                    theirs["read"],
                    theirs["calls"],
                    f"{theirs['total_ms']:.0f}",
                    _ratio(row["read_ratio"]),
                    _ratio(row["time_ratio"]),
                ]
            )
        lines += _table(
            [
                "pattern",
                "returned",
                "pages",
                "calls",
                "read",
                "read/returned",
                "page ms p50",
                "page ms p95",
                "total ms",
                "Scan read",
                "Scan calls",
                "Scan ms",
                "read ratio",
                "time ratio",
            ],
            rows,
        )
        lines += ["", "Parameters:", ""]
        lines += [f"- {row['pattern']}: `{row['query'] or '(none)'}`" for row in listing]
        lines.append("")
    sharded = results.get("listing_shards")
    if sharded:
        lines += [
            "## Listing over shards: items read per item returned (calls per page)",
            "",
            "The same page-through with the feed and every tag partition split N ways "
            "(`FEED_SHARDS` = `TAG_SHARDS` = N); by user is never sharded.",
            "",
        ]
        names = [row["pattern"] for row in sharded[0]["patterns"]]
        by_count = {
            entry["shards"]: {row["pattern"]: row for row in entry["patterns"]} for entry in sharded
        }
        lines += _table(
            ["pattern", *(f"N = {count}" for count in by_count)],
            [
                [
                    name,
                    *(
                        f"{row['read_per_returned']:.3f} ({row['calls_per_page']:.1f})"
                        for row in (rows[name] for rows in by_count.values())
                    ),
                ]
                for name in names
            ],
        )
        lines.append("")
    if results.get("scale"):
        lines += scale.render(results["scale"])
    uploads = results.get("upload")
    if uploads:
        lines += [
            "## Upload: the service (multipart) against a bare `put_object` of the same bytes",
            "",
            "Median of the timed runs; peak memory is Python allocations (`tracemalloc`) "
            "during one call, as a multiple of the image size (Pillow's decoded pixels "
            "live outside the Python heap and are not in it). JSON/base64 form for "
            "information.",
            "",
        ]
        rows = []
        for item in uploads:
            phases = item["service_phases_ms_median"]
            rows.append(
                [
                    item["label"],
                    f"{item['image_bytes']:,}",
                    "x".join(str(n) for n in item["pixels"]),
                    f"{item['service_ms']:.1f}",
                    f"{item['bare_put_object_ms']:.1f}",
                    f"{item['time_ratio']:.2f}",
                    f"{item['service_peak_x']:.2f}",
                    f"{item['bare_put_object_peak_x']:.2f}",
                    " / ".join(f"{phases.get(k, 0):.1f}" for k in _PHASES),
                    f"{item['json_form_ms']:.1f} ({item['json_form_time_ratio']:.2f}x)",
                    f"{item['json_form_peak_x']:.2f}",
                ]
            )
        lines += _table(
            [
                "image",
                "bytes",
                "pixels",
                "service ms",
                "put_object ms",
                "time ratio",
                "peak x size",
                "put_object peak x",
                "parse / S3 / DynamoDB / other ms",
                "JSON form ms",
                "JSON peak x",
            ],
            rows,
        )
        lines.append("")
    lines += _direct_uploads(results.get("direct_upload") or [])
    cold = results.get("cold_start")
    if cold:
        heaviest = ", ".join(
            f"{name} {ms:.0f}" for name, ms in cold["heaviest_direct_imports_ms"].items()
        )
        loaded = ", ".join(
            f"{name} {'loaded' if is_loaded else 'not loaded'}"
            for name, is_loaded in cold["loaded_after_import_app"].items()
        )
        package = cold["deployment_zip_mib"]
        lines += [
            "## Cold start",
            "",
            f"- `python -X importtime -c 'import app'`: {cold['import_app_ms_median']:.0f} ms "
            f"(median of {cold['runs']} fresh processes); heaviest direct imports (ms): "
            f"{heaviest}",
            _bare_app_line(cold),
            f"- after `import app`: {loaded}",
            "- `deployment.zip`: "
            + (f"{package:.2f} MiB ({cold['deployment_zip_note']})" if package else "")
            + (cold["deployment_zip_note"] if package is None else ""),
            "",
        ]
    if results.get("imaging"):
        from bench.imaging import render as render_imaging

        lines += render_imaging(results["imaging"])
    if results.get("delivery"):
        from bench.delivery import render as render_delivery

        lines += render_delivery(results["delivery"])
    if results.get("webp_method"):
        from bench.webp_method import render as render_webp_method

        lines += render_webp_method(results["webp_method"])
    if results.get("processing_cpu"):
        from bench.processing_cpu import render as render_processing_cpu

        lines += render_processing_cpu(results["processing_cpu"])
    from bench.library import render as render_library

    lines += render_library(results.get("library"))
    lines += ["## Targets", ""]
    lines += _table(
        ["target", "result", "measured"],
        [
            [t["target"], "PASS" if t["passed"] else "**MISS**", t["measured"]]
            for t in results["targets"]
        ],
    )
    if results.get("problems"):
        lines += ["", "## Wrong answers", ""] + [f"- {p}" for p in results["problems"]]
    return "\n".join(lines) + "\n"


_PHASES = ("parse_upload", "s3_put", "dynamodb", "other")


def _direct_uploads(rows: list[dict[str, Any]]) -> list[str]:
    """The direct-upload section (``bench/direct_upload.py``), or nothing."""
    if not rows:
        return []
    lines = [
        "## Direct uploads: `POST /uploads`, the client's presigned POST, `complete`",
        "",
        "Medians of the timed runs (ms). *API calls* = start + complete - processing, per "
        "run; of complete, *HEAD* is the HEAD of the uploaded object (constant on S3; moto "
        "hashes the object for its ETag on the first HEAD), *read* the GET of the object, "
        "*store* the PUTs of the original and its renditions; *fixed* = API calls - HEAD - "
        "read - store. "
        "*POST* is the client's POST of the file with the service's presigned POST, *bare "
        "POST* the same code with a bare `generate_presigned_post` for another key. Peak "
        "memory of ingest (`complete`) as a multiple of the image size: the resident set "
        "high-water mark of a child process running `complete` alone (RSS, pixels "
        "included) and Python allocations (`tracemalloc`, without Pillow's pixels).",
        "",
    ]
    table = [
        [
            row["label"],
            f"{row['image_bytes']:,}",
            "x".join(str(n) for n in row["pixels"]),
            row["runs"],
            f"{row['start_ms']:.1f}",
            f"{row['complete_ms']:.1f}",
            f"{row['processing_ms']:.1f}",
            f"{row['s3_head_ms']:.1f} / {row['s3_read_ms']:.1f} / {row['s3_store_ms']:.1f}",
            f"{row['api_ms']:.1f}",
            f"{row['fixed_ms']:.1f}",
            f"{row['transfer_ms']:.1f}",
            f"{row['bare_post_ms']:.1f}",
            f"{row['transfer_ratio']:.3f}",
            _ratio(row["rss_peak_x"]),
            _ratio(row["tracemalloc_peak_x"]),
        ]
        for row in rows
    ]
    lines += _table(
        [
            "image",
            "bytes",
            "pixels",
            "runs",
            "start",
            "complete",
            "processing",
            "S3 HEAD / read / store",
            "API calls",
            "fixed",
            "POST",
            "bare POST",
            "POST ratio",
            "RSS peak x",
            "tracemalloc peak x",
        ],
        table,
    )
    lines.append("")
    return lines


def _bare_app_line(cold: dict[str, Any]) -> str:
    """The cold-start section's comparison with a bare Chalice app."""
    bare = cold.get("bare_chalice_app_ms_median")
    if not bare:
        return "- a bare Chalice app: not measured"
    ratio = cold["import_app_ms_median"] / bare
    return f"- a bare Chalice app: {bare:.0f} ms (`import app` is {ratio:.1f}x)"
