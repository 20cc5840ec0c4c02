"""Cold start: how long importing the app takes in a fresh process, what it pulls in,
and how big the Lambda package is.

``python -X importtime -c "import app"`` runs from the project root with the ``dev``
stage's environment variables (importing ``app`` reads none of them: the service is
built on the first request, but a Lambda has them set, so the benchmark does too).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Modules whose presence after ``import app`` is reported (heavy, needed by uploads only).
WATCHED = ("PIL", "python_multipart", "jwt", "yaml", "cryptography")


@dataclass
class ColdStart:
    """``import_ms``: median cumulative import time of ``app`` over ``runs`` processes;
    ``heaviest``: its direct imports by cumulative time (ms), heaviest first;
    ``loaded``: whether each of :data:`WATCHED` is in ``sys.modules`` after the import;
    ``package_mib``: size of ``deployment.zip`` (None when not built, see ``package_note``);
    ``bare_ms``: the same for a bare Chalice app (one ``Chalice(...)``, no routes), the
    floor ``import app`` is compared with.
    """

    import_ms: float
    runs: int
    heaviest: list[tuple[str, float]] = field(default_factory=list)
    loaded: dict[str, bool] = field(default_factory=dict)
    package_mib: float | None = None
    package_note: str = ""
    bare_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON object."""
        return {
            "import_app_ms_median": round(self.import_ms, 1),
            "bare_chalice_app_ms_median": None if self.bare_ms is None else round(self.bare_ms, 1),
            "runs": self.runs,
            "heaviest_direct_imports_ms": {name: round(ms, 1) for name, ms in self.heaviest},
            "loaded_after_import_app": self.loaded,
            "deployment_zip_mib": None if self.package_mib is None else round(self.package_mib, 2),
            "deployment_zip_note": self.package_note,
        }


def stage_environment(stage: str = "dev") -> dict[str, str]:
    """This process's environment plus the stage's variables from ``.chalice/config.json``."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    variables = config["stages"][stage].get("environment_variables", {})
    return {**os.environ, **variables, "AWS_DEFAULT_REGION": "us-east-1"}


def parse_importtime(stderr: str, module: str) -> tuple[float, list[tuple[str, float]]]:
    """``module``'s cumulative import time (ms) and its direct imports' (ms), from
    ``-X importtime`` output (``import time: self [us] | cumulative | name``, children
    before their parent, indented two spaces per level).

    Raises:
        ValueError: ``module`` is not in the output.
    """
    rows: list[tuple[int, str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(cumulative) / 1000))
    for index, (depth, name, ms) in enumerate(rows):
        if name == module and depth == 0:
            children = []
            for child_depth, child, child_ms in reversed(rows[:index]):
                if child_depth == depth:
                    break
                if child_depth == depth + 1:
                    children.append((child, child_ms))
            return ms, sorted(children, key=lambda pair: -pair[1])
    raise ValueError(f"{module} not found in the -X importtime output")


def measure_cold_start(runs: int, package: bool) -> ColdStart:
    """Median of ``runs`` fresh ``import app`` (after one warm-up that compiles the
    ``.pyc`` files), the modules it loaded, and with ``package`` the zip's size."""
    env = stage_environment()
    times: list[float] = []
    heaviest: list[tuple[str, float]] = []
    for run in range(runs + 1):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import app"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        ms, children = parse_importtime(done.stderr, "app")
        if run:
            times.append(ms)
            heaviest = children[:5]
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "bare_app.py").write_text(
            'from chalice import Chalice\n\napp = Chalice(app_name="bare")\n'
        )
        for run in range(runs + 1):
            done = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import bare_app"],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            if run:
                bare.append(parse_importtime(done.stderr, "bare_app")[0])
    probe = "import json, sys, app; print(json.dumps({m: m in sys.modules for m in %r}))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe % (WATCHED,)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = ColdStart(
        import_ms=statistics.median(times),
        runs=runs,
        heaviest=heaviest,
        loaded=json.loads(loaded.stdout),
        bare_ms=statistics.median(bare),
    )
    if package:
        result.package_mib, result.package_note = package_size(env)
    else:
        result.package_note = "skipped (--skip-package)"
    return result


def package_size(env: dict[str, str]) -> tuple[float | None, str]:
    """Size (MiB) of the ``deployment.zip`` that ``chalice package --pkg-format
    terraform --stage dev`` builds (what ``make package`` ships; CloudFormation packaging
    refuses an app with an S3 notification), and a note (time taken, or why not)."""
    chalice = Path(sys.executable).with_name("chalice")
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        try:
            done = subprocess.run(
                [str(chalice), "package", "--pkg-format", "terraform", "--stage", "dev", out],
                cwd=ROOT,
                env={"AWS_DEFAULT_REGION": "us-east-1", **env},
                capture_output=True,
                text=True,
                timeout=240,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"n/a: chalice package failed ({exc})"
        seconds = time.perf_counter() - began
        zip_path = Path(out) / "deployment.zip"
        if done.returncode != 0 or not zip_path.exists():
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"n/a: chalice package exited {done.returncode} ({last[0]})"
        return zip_path.stat().st_size / 2**20, f"chalice package --stage dev, {seconds:.0f} s"
