"""Every ```bash block of README.md runs as written against ``make run``'s stack.

Convention (README.md's *Tests* section says it too):

- Every fenced block whose info string starts with ``bash`` is run, one ``bash`` process
  per block (``set -eo pipefail``), and must exit 0.
- A block that cannot run against a local server starts with the comment line
  ``# not run by tests: REASON`` (it needs Docker, AWS, a deployed stack, starts a server
  itself...): it is reported as skipped with that reason.

What a block gets:

- ``make run``'s stack (``python -m scripts.run_local``, moto's server, chalice local) on a
  free port, started once for the module; every ``http://127.0.0.1:8000`` in a block
  is rewritten to it, and ``IMAGE_API_URL`` points the CLI at it.
- A fresh working folder holding ``photo.jpg`` (~400 KB, as a real photo),
  ``photo.heic``, ``cat.jpg`` and ``~/Pictures/trip/`` (``HOME`` is a folder of the
  test), and ``.venv/bin/image-client`` written by the Makefile's own rule (for a
  stand-in venv running this Python).
- ``IMAGE_ID``: an image alice uploaded just before the block (blocks delete it).

A failure names the README line of the block and shows the block as run, its exit
status, stdout and stderr. Run it with ``-v -rs`` to see which blocks ran and which were
skipped, and why.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PIL import Image

from scripts.emulator import free_port, wait_for_port
from tests.integration.support import (
    PROJECT_DIR,
    fixture_bytes,
    require_tools,
    start_run_local,
    stop_run_local,
)

pytestmark = pytest.mark.integration

README = PROJECT_DIR / "README.md"
SKIP_MARK = "# not run by tests:"
DEFAULT_API = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Block:
    """One ```bash block: the README line of its first command line, and its text."""

    line: int
    text: str

    @property
    def skip_reason(self) -> str | None:
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        return first[len(SKIP_MARK) :].strip() if first.startswith(SKIP_MARK) else None


def bash_blocks(markdown: str) -> list[Block]:
    """The ```bash blocks of ``markdown``, in order."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"(`{3,})bash\b.*", lines[index])
        if fence is None:
            index += 1
            continue
        start = index + 1
        end = start
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        blocks.append(Block(line=start + 1, text="\n".join(lines[start:end]) + "\n"))
        index = end + 1
    return blocks


BLOCKS = bash_blocks(README.read_text())


@dataclass(frozen=True)
class LocalStack:
    """The running stack and the folders a block runs in."""

    api: str
    log: Path


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    require_tools()
    if shutil.which("curl") is None:
        pytest.skip("the README's examples need curl")
    log = tmp_path_factory.mktemp("readme") / "run_local.log"
    port = free_port()
    process = start_run_local(port, log, RUN_LOCAL_STATE=str(log.with_name("state.json")))
    try:
        wait_for_port(port, process, timeout=60)
        yield LocalStack(f"http://127.0.0.1:{port}", log)
    finally:
        stop_run_local(process)


def jpeg(noisy: bool = False) -> bytes:
    """A small JPEG, or (``noisy``) one of ~400 KB, the size of a real photo that no
    command line can carry as base64 (Linux: 128 KiB per argument)."""
    size = (480, 360)
    image = (
        Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
        if noisy
        else Image.new("RGB", size, (30, 120, 200))
    )
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def user_folder(root: Path) -> dict[str, str]:
    """The working folder and environment of one block (see the module docstring)."""
    work, home = root / "work", root / "home"
    (home / "Pictures" / "trip").mkdir(parents=True)
    work.mkdir()
    (work / "photo.jpg").write_bytes(jpeg(noisy=True))
    (work / "cat.jpg").write_bytes(jpeg())
    (work / "photo.heic").write_bytes(fixture_bytes("processing/gps.heic"))
    (home / "Pictures" / "trip" / "beach.jpg").write_bytes(jpeg())
    (home / "Pictures" / "trip" / "sea.png").write_bytes(fixture_bytes("alpha.png"))
    venv = work / ".venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / ".installed").touch()
    subprocess.run(
        ["make", "--no-print-directory", "-s", f"VENV={venv}", str(venv / "bin" / "image-client")],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )
    return {"work": str(work), "home": str(home)}


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs_as_written(
    block: Block, local_stack: LocalStack, tmp_path: Path
) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"README.md:{block.line}: {block.skip_reason}")
    folders = user_folder(tmp_path)
    uploaded = requests.post(
        f"{local_stack.api}/images",
        files={"file": ("mine.jpg", jpeg(), "image/jpeg")},
        data={"user_id": "alice", "tags": "cat,beach", "title": "Beach day"},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IMAGE_"))},
        "HOME": folders["home"],
        "IMAGE_API_URL": local_stack.api,
        "IMAGE_ID": uploaded.json()["image_id"],
        "PYTHONPATH": "",
    }
    script = "set -eo pipefail\n" + block.text.replace(DEFAULT_API, local_stack.api)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=folders["work"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"README.md:{block.line}: the block exited {done.returncode}\n"
        f"--- block as run (cwd {folders['work']}, IMAGE_ID={env['IMAGE_ID']}) ---\n{script}"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    )


def test_every_block_is_found_and_every_skip_gives_a_reason() -> None:
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        if block.text.lstrip().startswith("# not run"):
            assert block.skip_reason, f"README.md:{block.line}: `{SKIP_MARK} REASON`"
