"""Processing CPU per image against ``make run``: a direct upload with ``complete``
(the API's ``complete`` and the S3 event both arrive) against ``POST /images``.

``python -m scripts.run_local --no-autoreload`` on a free port, as ``make run`` starts
it: moto's server, the event delivery (``scripts.deliver_uploads``, the S3 event
handler) and ``chalice local`` (the API), each a process. The CPU seconds of each
(``/proc/PID/stat`` user + system) are read before and after ``uploads`` uploads of the
12 MP JPEG of ``bench/imaging.py``:

- **POST /images**: the file as the form part ``file``.
- **direct**: ``POST /uploads``, the presigned POST to S3, ``POST .../complete``; then
  the bench waits until the delivery has taken the upload's event off its queue (the
  event handler ran), so its work is counted.

The delivery polls its queue while idle: its CPU over an idle period of the same length
is subtracted. The figure is the API's plus the delivery's CPU per upload; moto's is
reported beside it (the emulator, not the service). One warm-up of each kind first.
Target (issue 17): direct <= 1.1x ``POST /images`` (one processing, not two).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import requests

from bench.imaging import _jpeg

ROOT = Path(__file__).resolve().parent.parent
USER = "bench"
MAX_RATIO = 1.1
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _role(pid: int) -> str:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "deliver_uploads" in command:
        return "delivery"
    if "chalice" in command:
        return "api"
    return "emulator"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """``scripts.run_local`` in its own process group; ``pids`` by role."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        state = workdir / "state.json"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scripts.run_local",
                "--port",
                str(self.port),
                "--no-autoreload",
            ],
            cwd=ROOT,
            env={**os.environ, "RUN_LOCAL_STATE": str(state)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not state.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("scripts.run_local did not start")
            time.sleep(0.2)
        info = json.loads(state.read_text())
        self.api = str(info["api_url"])
        self.endpoint = str(info["endpoint_url"])
        self.pids = {_role(pid): pid for pid in _children(self.process.pid)}
        sqs = boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self._sqs = sqs
        self._queue = sqs.list_queues()["QueueUrls"][0]

    def cpu(self) -> dict[str, float]:
        return {role: _cpu_seconds(pid) for role, pid in self.pids.items()}

    def events_drained(self, timeout: float = 120) -> None:
        """Wait until the delivery has handled every queued event."""
        deadline = time.monotonic() + timeout
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        while time.monotonic() < deadline:
            attributes = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=names)
            if all(attributes["Attributes"].get(name) == "0" for name in names):
                return
            time.sleep(0.2)
        raise RuntimeError("the upload events were not delivered")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


def _post_image(api: str, data: bytes) -> None:
    response = requests.post(
        f"{api}/images",
        data={"user_id": USER, "title": "bench"},
        files={"file": ("photo.jpg", data, "image/jpeg")},
        timeout=120,
    )
    assert response.status_code == 201, response.text


def _direct(api: str, data: bytes) -> int:
    headers = {"X-User-Id": USER}
    started = requests.post(
        f"{api}/uploads",
        json={"filename": "photo.jpg", "title": "bench"},
        headers=headers,
        timeout=60,
    ).json()
    form = started["upload"]
    sent = requests.post(
        form["url"],
        data=form["fields"],
        files={form["file_field"]: ("photo.jpg", data, "image/jpeg")},
        timeout=120,
    )
    assert sent.status_code in (200, 201, 204), sent.text
    done = requests.post(
        f"{api}/uploads/{started['upload_id']}/complete", headers=headers, timeout=60
    )
    assert done.status_code in (200, 201, 202), done.text
    return done.status_code


def _phase(server: _Server, uploads: int, work: Any) -> tuple[dict[str, float], float]:
    server.events_drained()
    before, began = server.cpu(), time.monotonic()
    for _ in range(uploads):
        work()
    server.events_drained()
    after = server.cpu()
    return {role: after[role] - before[role] for role in after}, time.monotonic() - began


def measure_processing_cpu(uploads: int = 5) -> dict[str, Any]:
    """``{"uploads", "image_bytes", "post_images": {role: cpu s per upload},
    "direct": {...}, "complete_statuses": [...], "ratio"}``; roles ``api``,
    ``delivery`` (idle polling subtracted), ``emulator``, and ``service`` (api +
    delivery)."""
    data = _jpeg(1.0)
    with tempfile.TemporaryDirectory() as workdir:
        server = _Server(Path(workdir))
        try:
            _post_image(server.api, data)  # warm-up: Pillow and its plugins imported
            _direct(server.api, data)
            server.events_drained()
            idle_before = server.cpu()
            time.sleep(5)
            idle_rate = (server.cpu()["delivery"] - idle_before["delivery"]) / 5
            statuses: list[int] = []
            post, post_s = _phase(server, uploads, lambda: _post_image(server.api, data))
            direct, direct_s = _phase(
                server, uploads, lambda: statuses.append(_direct(server.api, data))
            )
        finally:
            server.stop()

    def per_upload(delta: dict[str, float], seconds: float) -> dict[str, float]:
        delivery = max(0.0, delta["delivery"] - idle_rate * seconds)
        return {
            "api": delta["api"] / uploads,
            "delivery": delivery / uploads,
            "emulator": delta["emulator"] / uploads,
            "service": (delta["api"] + delivery) / uploads,
        }

    post_cpu, direct_cpu = per_upload(post, post_s), per_upload(direct, direct_s)
    return {
        "uploads": uploads,
        "image_bytes": len(data),
        "delivery_idle_cpu_per_s": idle_rate,
        "post_images": post_cpu,
        "direct": direct_cpu,
        "complete_statuses": statuses,
        "ratio": direct_cpu["service"] / post_cpu["service"],
    }


def render(measured: dict[str, Any]) -> list[str]:
    """The report's Markdown section."""
    lines = [
        "## Processing CPU per image against `make run`",
        "",
        f"{measured['uploads']} uploads of the 12 MP JPEG ({measured['image_bytes']:,} bytes) "
        "each way; CPU seconds per upload of each process of `scripts.run_local` "
        "(the event delivery's idle polling, "
        f"{measured['delivery_idle_cpu_per_s'] * 1000:.1f} ms/s, subtracted). "
        f"`complete` answered {sorted(set(measured['complete_statuses']))}.",
        "",
        "| way | API | event delivery | API + delivery | moto (emulator) |",
        "|---|---|---|---|---|",
    ]
    for label, key in (("POST /images", "post_images"), ("direct + complete", "direct")):
        row = measured[key]
        lines.append(
            f"| {label} | {row['api']:.3f} | {row['delivery']:.3f} | {row['service']:.3f} | "
            f"{row['emulator']:.3f} |"
        )
    lines += ["", f"Direct / POST /images (API + delivery): {measured['ratio']:.2f}x", ""]
    return lines


def target(measured: dict[str, Any]) -> dict[str, Any]:
    """Issue 17's target: one processing's worth per direct upload."""
    return {
        "target": f"direct upload processing CPU (API + event) <= {MAX_RATIO}x POST /images",
        "passed": measured["ratio"] <= MAX_RATIO,
        "measured": f"{measured['ratio']:.2f}x ({measured['direct']['service']:.3f} vs "
        f"{measured['post_images']['service']:.3f} CPU s per upload)",
    }


if __name__ == "__main__":  # pragma: no cover - `python -m bench.processing_cpu [N]`
    result = measure_processing_cpu(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
    print("\n".join(render(result)))
    print(json.dumps(target(result)))
