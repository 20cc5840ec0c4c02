"""The direct-upload section's arithmetic, targets, report and request body (no emulator)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from bench import report
from bench.direct_upload import DirectUploadResult, MultipartFile, Run, evaluate, noisy_png


def run_of(start: float, complete: float, processing: float, transfer: float = 1.0) -> Run:
    return Run(
        start=start,
        transfer=transfer,
        complete=complete,
        processing=processing,
        s3_head=0.05,
        s3_read=0.1,
        s3_store=0.2,
        bare=1.0,
    )


def result(label: str, runs: list[Run], peaks: tuple[float | None, float | None]) -> Any:
    return DirectUploadResult.from_runs(label, 1000, (10, 10), runs, peaks).to_json()


def test_api_cost_is_the_median_of_per_run_sums_without_processing() -> None:
    runs = [run_of(0.1, 1.0, 0.5), run_of(0.1, 2.0, 0.5), run_of(0.3, 9.0, 0.1)]
    row = result("1 MB", runs, (1.5, 2.5))

    assert row["api_ms"] == 1600.0  # per run: 0.6, 1.6, 9.2 s
    assert row["fixed_ms"] == 1250.0  # minus the object's HEAD, GET and PUTs
    assert row["complete_ms"] == 2000.0
    assert row["transfer_ratio"] == 1.0
    assert (row["tracemalloc_peak_x"], row["rss_peak_x"]) == (1.5, 2.5)


def test_targets_pass_and_miss_on_the_issue_thresholds() -> None:
    small = result("1 MB", [run_of(0.1, 0.9, 0.5)], (1.0, 2.0))  # API 0.5 s
    within = result("50 MB", [run_of(0.1, 3.45, 3.0, transfer=1.04)], (1.0, 2.9))  # 0.55 s
    beyond = result("50 MB", [run_of(0.1, 3.46, 3.0, transfer=1.06)], (1.0, 3.1))

    passed = evaluate({"direct_upload": [small, within]})
    missed = evaluate({"direct_upload": [small, beyond]})

    assert [t["passed"] for t in passed] == [True, True, True]
    assert [t["passed"] for t in missed] == [False, False, False]
    assert "RSS" in missed[2]["target"]
    assert "50 MB 1.060x" in missed[1]["measured"]
    assert evaluate({}) == []


def test_memory_target_falls_back_to_tracemalloc_without_rss() -> None:
    rows = [result("1 MB", [run_of(0.1, 0.9, 0.5)], (1.2, None))]

    (memory,) = [t for t in evaluate({"direct_upload": rows}) if "memory" in t["target"]]

    assert "tracemalloc" in memory["target"]
    assert memory["passed"]
    assert memory["measured"] == "1 MB 1.20x"


def test_report_has_a_row_per_size() -> None:
    rows = [result("1 MB", [run_of(0.1, 0.9, 0.5)], (1.0, None))]

    lines = report._direct_uploads(rows)

    assert lines[0].startswith("## Direct uploads")
    assert any(line.startswith("| 1 MB | 1,000 | 10x10 | 1 |") for line in lines)
    assert report._direct_uploads([]) == []


def test_noisy_png_is_seeded_and_near_its_size() -> None:
    data, pixels = noisy_png(200_000, seed=3)

    assert data == noisy_png(200_000, seed=3)[0]
    assert abs(len(data) - 200_000) < 2_000
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.size == pixels


def test_multipart_body_is_streamed_with_its_length(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG" + bytes(range(256)) * 10)
    body = MultipartFile({"key": "uploads/x", "policy": "p"}, "file", path, "image/png", 100)

    chunks = list(body)

    assert len(body) == sum(len(chunk) for chunk in chunks)
    assert max(len(chunk) for chunk in chunks[1:-1]) == 100  # the file, 100 bytes a read
    joined = b"".join(chunks)
    boundary = body.content_type.split("boundary=", 1)[1].encode()
    parts = joined.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    assert b'name="key"\r\n\r\nuploads/x\r\n' in parts[1]
    assert parts[3].endswith(b"\r\n\r\n" + path.read_bytes() + b"\r\n")
