"""The packaged deployment.zip carries a Lambda-compatible build of every native image
dependency (Pillow with AVIF, pillow-heif with libheif/libde265, blurhash), and the image
module works from the unpacked zip alone.

Lambda's python3.11 runtime is x86_64 Linux with glibc 2.26 (Amazon Linux 2), so every
shared object must be an x86_64 ELF needing no symbol version newer than GLIBC_2.26,
and every vendored wheel must carry a tag Chalice accepts for it (manylinux <= 2_26).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.test_deploy import _runtime_dir

pytestmark = pytest.mark.deploy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "processing"
LAMBDA_GLIBC = (2, 26)
ELF_MACHINE_X86_64 = 0x3E


@pytest.fixture(scope="module")
def archive(packaged_infra: Path) -> Path:
    """The deployment.zip that ``chalice package`` built."""
    path = packaged_infra / "chalice" / "deployment.zip"
    assert path.is_file()
    return path


@pytest.fixture(scope="module")
def names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zipped:
        return zipped.namelist()


def _matching(names: list[str], pattern: str) -> list[str]:
    return [name for name in names if re.fullmatch(pattern, name)]


def test_the_zip_holds_pillow_heif_with_its_native_libraries(names: list[str]) -> None:
    assert _matching(names, r"pillow_heif/__init__\.py")
    assert _matching(names, r"_pillow_heif\.cpython-311-x86_64-linux-gnu\.so")
    assert _matching(names, r"pillow_heif\.libs/libheif-[^/]+\.so[.0-9]*")
    assert _matching(names, r"pillow_heif\.libs/libde265-[^/]+\.so[.0-9]*")


def test_the_zip_holds_pillow_with_avif_webp_and_lcms(names: list[str]) -> None:
    assert _matching(names, r"PIL/AvifImagePlugin\.py")
    assert _matching(names, r"PIL/_avif\.cpython-311-x86_64-linux-gnu\.so")
    assert _matching(names, r"pillow\.libs/libavif-[^/]+\.so[.0-9]*")
    assert _matching(names, r"PIL/_webp\.cpython-311-x86_64-linux-gnu\.so")
    assert _matching(names, r"PIL/_imagingcms\.cpython-311-x86_64-linux-gnu\.so")


def test_the_zip_holds_blurhash(names: list[str]) -> None:
    assert _matching(names, r"blurhash/__init__\.py")


@pytest.mark.parametrize(
    ("dist", "version"), [("pillow", "11.3.0"), ("pillow_heif", "1.0.0"), ("blurhash", "1.1.5")]
)
def test_vendored_wheels_are_for_lambdas_platform(
    archive: Path, names: list[str], dist: str, version: str
) -> None:
    wheel = f"{dist}-{version}.dist-info/WHEEL"
    assert wheel in names, f"{dist} {version} is not vendored"
    with zipfile.ZipFile(archive) as zipped:
        tags = re.findall(r"^Tag: (\S+)$", zipped.read(wheel).decode(), re.MULTILINE)
    assert tags
    for tag in tags:
        python, abi, platform = tag.split("-")
        if platform == "any":
            continue
        assert (python, abi) == ("cp311", "cp311"), tag
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64|manylinux2014_x86_64", platform)
        assert match, tag
        if match.group(1):
            assert (int(match.group(1)), int(match.group(2))) <= LAMBDA_GLIBC, tag


def test_every_shared_object_runs_on_lambdas_glibc(archive: Path, names: list[str]) -> None:
    objects = [n for n in names if re.search(r"\.so(\.[0-9]+)*$", n)]
    assert len(objects) > 20
    with zipfile.ZipFile(archive) as zipped:
        for name in objects:
            data = zipped.read(name)
            assert data[:4] == b"\x7fELF", name
            assert int.from_bytes(data[18:20], "little") == ELF_MACHINE_X86_64, name
            needed = {
                (int(major), int(minor))
                for major, minor in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)
            }
            assert not needed or max(needed) <= LAMBDA_GLIBC, (name, max(needed))


_RUN = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from chalicelib.imaging import ImageLimits, process
import PIL, pillow_heif, blurhash
limits = ImageLimits(50 << 20, 50_000_000, 256 << 20, 300, (16, 32, 320))
out = {"from": {m.__name__: m.__file__ for m in (PIL, pillow_heif, blurhash)}}
for name in sys.argv[4:]:
    result = process(Path(sys.argv[3], name).read_bytes(), limits)
    out[name] = {"type": result.info.content_type,
                 "renditions": [r.size for r in result.renditions],
                 "placeholder": result.placeholder,
                 "stripped": result.original != Path(sys.argv[3], name).read_bytes()}
print(json.dumps(out))
"""


def test_the_unpacked_zip_processes_heic_and_avif(archive: Path, tmp_path: Path) -> None:
    task = tmp_path / "task"
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(task)
    runtime = _runtime_dir(tmp_path / "runtime")
    files = ["gps.heic", "gps.avif", "gps-orient6.jpg", "animated.webp"]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _RUN, str(task), str(runtime), str(FIXTURES), *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=task,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for module, path in out["from"].items():
        assert path.startswith(str(task)), (module, path)  # from the zip, not the venv
    assert out["gps.heic"]["type"] == "image/heic"
    assert out["gps.avif"]["type"] == "image/avif"
    for name in files:
        assert out[name]["renditions"][:2] == [16, 32], name
        assert out[name]["placeholder"], name
    for name in ("gps.heic", "gps.avif", "gps-orient6.jpg"):
        assert out[name]["stripped"], name
