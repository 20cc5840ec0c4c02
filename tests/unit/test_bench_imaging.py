"""bench/imaging.py at a tiny scale: every row, the libvips column or its printed reason,
and the JPEG target. No assertion on timing."""

from __future__ import annotations

import shutil

import pytest

from bench import imaging

LABELS = ["12 MP JPEG", "24 MP PNG", "12 MP HEIC", "animated GIF (60 frames)"]


def test_rows_without_vipsthumbnail_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging.shutil, "which", lambda name: None)
    measured = imaging.measure_imaging(runs=1, scale=0.04)

    assert [row["label"] for row in measured["rows"]] == LABELS
    for row in measured["rows"]:
        assert row["ours"]["seconds"] > 0 and row["ours"]["peak_rss_mib"] > 0
        assert "vips" not in row
        assert row["ours"]["renditions"][0][0] <= 320
    assert "vipsthumbnail not found" in measured["vips_skipped"]
    markdown = "\n".join(imaging.render(measured))
    assert "libvips column skipped: vipsthumbnail not found" in markdown
    for label in LABELS:
        assert f"| {label} |" in markdown
    assert imaging.target(measured) is None


@pytest.mark.skipif(shutil.which("vipsthumbnail") is None, reason="make bench-deps installs it")
def test_rows_with_vipsthumbnail_have_ratios() -> None:
    measured = imaging.measure_imaging(runs=1, scale=0.04)
    for row in measured["rows"]:
        assert row["vips"]["seconds"] > 0, row
        assert row["time_ratio"] > 0 and row["rss_ratio"] > 0
    goal = imaging.target(measured)
    assert goal is not None and goal["target"].startswith("12 MP JPEG")
