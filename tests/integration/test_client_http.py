"""``python -m scripts.client`` against ``make run``'s own script (``run_local`` over
moto's server): a folder upload through direct uploads, a refused file that does not
stop the rest, the listing with filters, download and delete."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from scripts.run_local import PROJECT_DIR
from tests.integration.support import FIXTURES, Stack, child_environment

pytestmark = pytest.mark.integration


def run_client(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, against ``stack``."""
    env = child_environment()
    env.pop("IMAGE_API_URL", None)
    env.pop("IMAGE_API_TOKEN", None)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "scripts.client", *args, "--api", stack.base_url],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, fmt)
    return path


def noise_png(path: Path, size: tuple[int, int]) -> Path:
    """A PNG of random pixels: it does not compress, so it is about 3 bytes per pixel."""
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(path, "PNG")
    return path


def listing(stack: Stack, *filters: str) -> list[dict[str, Any]]:
    result = run_client(stack, "list", "--json", "--all", *filters)
    assert result.returncode == 0, result.stderr
    records: list[dict[str, Any]] = json.loads(result.stdout)
    return records


def test_upload_a_folder_list_download_delete(stack: Stack, tmp_path: Path) -> None:
    user = f"cli{uuid.uuid4().hex[:10]}"
    folder = tmp_path / "photos"
    write_image(folder / "a.jpg", (320, 200), (200, 30, 40), "JPEG")
    write_image(folder / "trip" / "b.png", (64, 64), (30, 160, 60), "PNG")
    (folder / "notes.txt").write_text("not an image; folders skip it")
    # Larger than POST /images can carry (about 4.5 MiB): only a direct upload takes it.
    big = noise_png(folder / "trip" / "big.png", (1400, 1300))
    assert big.stat().st_size > 5 * 1024 * 1024
    text_file = FIXTURES / "not-an-image.txt"

    result = run_client(
        stack,
        "upload", str(folder), str(text_file), str(tmp_path / "missing.jpg"),
        "--user", user, "--tags", "cli,trip", "--title", "From the CLI", "--json",
    )  # fmt: skip

    assert result.returncode == 2, result.stderr  # the text file and the missing path
    outcomes = {Path(item["path"]).name: item for item in json.loads(result.stdout)}
    assert set(outcomes) == {"a.jpg", "b.png", "big.png", "not-an-image.txt"}
    assert "415" in outcomes["not-an-image.txt"]["error"]
    assert "missing.jpg: no such file or folder" in result.stderr
    uploaded = {name: item["record"] for name, item in outcomes.items() if item["record"]}
    assert set(uploaded) == {"a.jpg", "b.png", "big.png"}
    assert uploaded["big.png"]["size_bytes"] == big.stat().st_size
    for record in uploaded.values():
        assert record["user_id"] == user
        assert record["title"] == "From the CLI"
        assert record["tags"] == ["cli", "trip"]

    records = listing(stack, "--user", user, "--tags", "trip", "--limit", "2")  # two pages
    assert {r["image_id"] for r in records} == {r["image_id"] for r in uploaded.values()}
    assert [r["created_at"] for r in records] == sorted(
        (r["created_at"] for r in records), reverse=True
    )
    assert listing(stack, "--user", user, "--title", "nothing like it") == []

    table = run_client(stack, "list", "--user", user)
    assert table.returncode == 0, table.stderr
    assert "3 image(s)" in table.stdout
    assert uploaded["a.jpg"]["image_id"] in table.stdout

    target = tmp_path / "saved.jpg"
    image_id = uploaded["a.jpg"]["image_id"]
    download = run_client(stack, "download", image_id, "-o", str(target))
    assert download.returncode == 0, download.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == uploaded["a.jpg"]["sha256"]

    refused = run_client(stack, "delete", image_id, "--user", "someone-else")
    assert refused.returncode == 1
    assert "403" in refused.stderr
    deleted = run_client(stack, "delete", image_id, "--user", user)
    assert deleted.returncode == 0, deleted.stderr
    assert image_id not in {r["image_id"] for r in listing(stack, "--user", user)}
    gone = run_client(stack, "download", image_id, "-o", str(tmp_path / "gone"))
    assert gone.returncode == 1
    assert "404" in gone.stderr


def test_nothing_to_upload_and_an_unreachable_api_fail(stack: Stack, tmp_path: Path) -> None:
    empty = run_client(stack, "upload", str(tmp_path))
    assert empty.returncode == 1
    assert "nothing to upload" in empty.stderr
    env = child_environment()
    unreachable = subprocess.run(
        [sys.executable, "-m", "scripts.client", "list", "--api", "http://127.0.0.1:9"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert unreachable.returncode == 1
    assert "cannot reach the API" in unreachable.stderr


def test_edit_moves_the_tags_and_honours_if_match(stack: Stack, tmp_path: Path) -> None:
    user = f"cli{uuid.uuid4().hex[:10]}"
    photo = write_image(tmp_path / "edit.png", (40, 30), (10, 20, 200), "PNG")
    uploaded = run_client(stack, "upload", str(photo), "--user", user, "--tags", "old", "--json")
    assert uploaded.returncode == 0, uploaded.stderr
    image_id = json.loads(uploaded.stdout)[0]["record"]["image_id"]

    edited = run_client(
        stack,
        "edit", image_id, "--user", user, "--title", "Renamed", "--tags", "new,blue",
        "--metadata", '{"camera": "X100"}', "--if-match", "1", "--json",
    )  # fmt: skip

    assert edited.returncode == 0, edited.stderr
    record = json.loads(edited.stdout)
    assert (record["title"], record["tags"], record["version"]) == ("Renamed", ["new", "blue"], 2)
    assert record["metadata"] == {"camera": "X100"}
    assert f'edited {image_id}: ETag "2"' in edited.stderr
    assert listing(stack, "--user", user, "--tags", "old") == []
    assert [r["title"] for r in listing(stack, "--user", user, "--tags", "new")] == ["Renamed"]

    stale = run_client(stack, "edit", image_id, "--user", user, "--title", "x", "--if-match", "1")
    assert stale.returncode == 1
    assert '412: If-Match: the image is at version "2" now' in stale.stderr
    other = run_client(stack, "edit", image_id, "--user", "someone-else", "--clear-metadata")
    assert (other.returncode, "403" in other.stderr) == (1, True)
    cleared = run_client(stack, "edit", image_id, "--user", user, "--clear-metadata", "--json")
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout)["metadata"] == {}
