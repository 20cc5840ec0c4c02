"""The command-line client's own logic (``scripts/client.py``), without a server:
file collection, exit status, one failure not stopping the rest, query mapping."""

from __future__ import annotations

import argparse
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from scripts import client as cli


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_walked_recursively_for_image_files(tmp_path: Path) -> None:
    a = touch(tmp_path / "trip" / "a.JPG")
    b = touch(tmp_path / "trip" / "day2" / "b.webp")
    touch(tmp_path / "trip" / "notes.txt")
    touch(tmp_path / "trip" / ".hidden" / "c.png")
    touch(tmp_path / "trip" / ".DS_Store")
    explicit = touch(tmp_path / "readme.txt")
    files, problems = cli.collect_files(
        [str(tmp_path / "trip"), str(explicit), str(tmp_path / "missing"), str(a)]
    )
    assert files == [a, b, explicit]  # sorted walk, explicit files always, no duplicates
    assert problems == [f"{tmp_path / 'missing'}: no such file or folder"]


@pytest.mark.parametrize(("failures", "status"), [(0, 0), (1, 1), (3, 3), (125, 125), (400, 125)])
def test_exit_status_counts_failures_up_to_125(failures: int, status: int) -> None:
    assert cli.exit_status(failures) == status


def test_upload_request_declares_name_size_and_digest(tmp_path: Path) -> None:
    path = touch(tmp_path / "p.png", b"12345")
    body = cli.upload_request(path, "alice", "Sea", ["beach", "trip"])
    assert body == {
        "filename": "p.png",
        "size_bytes": 5,
        "sha256": hashlib.sha256(b"12345").hexdigest(),
        "user_id": "alice",
        "title": "Sea",
        "tags": ["beach", "trip"],
    }
    assert cli.upload_request(path, None, None, []).keys() == {"filename", "size_bytes", "sha256"}


class FakeApi(cli.ApiClient):
    """Answers the three calls of a direct upload; files named ``bad*`` are a 415."""

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        if path == "/uploads":
            assert body is not None
            return {"upload_id": body["filename"], "upload": {"url": "u", "fields": {}}}
        if path.endswith("/complete"):
            name = path.split("/")[2]
            if name.startswith("bad"):
                raise cli.ApiError(415, f"file: {name} is not a supported image")
            return {"image_id": f"id-{name}"}
        raise AssertionError(path)

    def post_to_bucket(
        self, upload: dict[str, Any], path: Path, on_bytes: Callable[[int], None]
    ) -> None:
        size = path.stat().st_size
        on_bytes(size // 2)
        on_bytes(size + 100)  # multipart framing: more than the file


def test_one_failure_does_not_stop_the_others(tmp_path: Path) -> None:
    files = [touch(tmp_path / name, b"a" * 1000) for name in ("a.png", "bad.txt", "c.png")]
    console = Console(file=io.StringIO())
    outcomes = cli.upload_all(FakeApi("http://api"), files, None, [], jobs=2, console=console)
    assert [o.path for o in outcomes] == files
    assert [o.record["image_id"] if o.record else None for o in outcomes] == [
        "id-a.png",
        None,
        "id-c.png",
    ]
    assert outcomes[1].error == "415: file: bad.txt is not a supported image"


class BusyApi(FakeApi):
    """``complete`` answers 202 (the S3 event holds the work); the upload is ready on
    the second poll of ``GET /uploads/{id}``."""

    polls = 0

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        upload_id = path.split("/")[2] if path.startswith("/uploads/") else ""
        pending = {"upload_id": upload_id, "status": "pending"}
        if path.endswith("/complete"):
            return pending
        if method == "GET" and path == f"/uploads/{upload_id}":
            self.polls += 1
            if self.polls < 2:
                return pending
            return {**pending, "status": "ready", "image": {"image_id": f"id-{upload_id}"}}
        return super().call(method, path, **kwargs)


def test_a_202_from_complete_is_followed_until_the_upload_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    api = BusyApi("http://api")
    record = cli.upload_file(api, touch(tmp_path / "a.png"), None, [], lambda sent: None)
    assert record == {"image_id": "id-a.png"}
    assert api.polls == 2


def test_upload_command_exit_status_is_the_number_of_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.png", "bad1.png", "bad2.png"):
        touch(tmp_path / "in" / name)
    monkeypatch.setattr(cli, "ApiClient", FakeApi)
    monkeypatch.setenv("IMAGE_USER", "alice")
    status = cli.main(["upload", str(tmp_path / "in"), str(tmp_path / "nothing-here")])
    assert status == 3  # two refused, one missing path


def test_list_options_map_to_query_parameters() -> None:
    args = argparse.Namespace(
        user="alice", tags="beach", date_from="2026-01-01", date_to=None, title="sea", limit=5
    )
    assert cli.list_params(args) == {
        "user_id": "alice",
        "tag": "beach",
        "date_from": "2026-01-01",
        "title": "sea",
        "limit": "5",
    }
    args.tags = "beach, trip"
    assert cli.list_params(args)["tags"] == "beach,trip"


def test_download_target(tmp_path: Path) -> None:
    assert cli.download_target(None, "../../etc/passwd") == Path("passwd")
    assert cli.download_target(str(tmp_path), "a.png") == tmp_path / "a.png"
    assert cli.download_target(str(tmp_path / "b.png"), "a.png") == tmp_path / "b.png"
    # A path ending in / is a folder even before it exists (it wrote a file named "saved").
    assert cli.download_target(f"{tmp_path}/saved/", "a.png") == tmp_path / "saved" / "a.png"


class DownloadApi(cli.ApiClient):
    """An image view whose download "URL" is the bytes to write."""

    def call(self, method: str, path: str, **_: Any) -> Any:
        return {"filename": "beach.png", "download_url": "new bytes"}

    def download(self, url: str, target: Path) -> int:
        target.write_text(url)
        return len(url)


def test_download_into_a_missing_folder_keeps_the_name_and_never_overwrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "ApiClient", DownloadApi)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["download", "ID", "-o", "./saved/"]) == 0
    saved = tmp_path / "saved" / "beach.png"
    assert saved.read_text() == "new bytes"
    saved.write_text("mine")

    assert cli.main(["download", "ID", "-o", "./saved/"]) == 1
    assert "saved/beach.png exists: add --force to overwrite it" in capsys.readouterr().err
    assert saved.read_text() == "mine"
    assert cli.main(["download", "ID", "-o", str(saved)]) == 1  # named as a file, too
    assert saved.read_text() == "mine"

    assert cli.main(["download", "ID", "-o", "saved", "--force"]) == 0  # an existing folder
    assert saved.read_text() == "new bytes"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["beach.png"]  # no .part left


def test_list_is_readable_at_80_columns() -> None:
    record = {
        "image_id": "0b7f7d2e-7c0a-4a8e-9d55-3f1b2a6c9e41",
        "filename": "IMG_20261121_103000_a_long_phone_name.jpg",
        "title": "Sunset over the bay, seen from the old harbour wall",
        "user_id": "alice@example.com",
        "tags": ["beach", "sunset", "trip"],
        "size_bytes": 2_400_000,
        "created_at": "2026-11-21T10:30:00.123Z",
    }
    console = Console(file=io.StringIO(), width=80)
    console.print(cli.listing_table([record, {**record, "image_id": "x" * 36}], 80))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in lines)
    header, first, second = lines[1:4]  # after the title: one line per image
    assert header.split()[:2] == ["id", "filename"]
    assert first.startswith(record["image_id"] + " ")
    assert "IMG_" in first and "2.3 MiB" in first and "2026-11-21" in first
    assert second.startswith("x" * 36 + " ")
    assert len(lines) == 4
    wide = Console(file=io.StringIO(), width=140)
    wide.print(cli.listing_table([record], 140))
    assert "alice@example.com" in wide.file.getvalue()  # type: ignore[attr-defined]


def test_a_file_says_processing_while_complete_runs(tmp_path: Path) -> None:
    seen: list[str] = []
    console = Console(file=io.StringIO())

    class Watching(FakeApi):
        def call(self, method: str, path: str, **kwargs: Any) -> Any:
            if path.endswith("/complete"):
                seen.extend(task.description for task in progress.tasks)
            return super().call(method, path, **kwargs)

    progress = cli._progress(console)
    real = cli._progress
    cli._progress = lambda _console: progress  # type: ignore[assignment]
    try:
        file = touch(tmp_path / "a.png", b"a" * 100)
        cli.upload_all(Watching("http://api"), [file], None, [], jobs=1, console=console)
    finally:
        cli._progress = real  # type: ignore[assignment]
    assert "a.png processing" in seen


@pytest.mark.parametrize("command", [["upload", "x.png"], ["delete", "ID"]])
def test_a_missing_identity_names_the_flags(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "x.png")
    for name in ("IMAGE_USER", "IMAGE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli, "ApiClient", FakeApi)  # never called
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "--user NAME (or set IMAGE_USER)" in err and "--token" in err
    assert "X-User-Id" not in err


def test_api_defaults_to_make_runs_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGE_API_URL", raising=False)
    assert cli.parse_args(["list"]).api == "http://127.0.0.1:8000"
    monkeypatch.setenv("IMAGE_API_URL", "http://elsewhere:1")
    assert cli.parse_args(["delete", "x"]).api == "http://elsewhere:1"


def test_identity_headers() -> None:
    assert cli.ApiClient("http://api", user="alice")._headers()["X-User-Id"] == "alice"
    with_token = cli.ApiClient("http://api", token="abc.def.ghi")._headers()
    assert with_token["Authorization"] == "Bearer abc.def.ghi"
    assert "X-User-Id" not in with_token


def test_error_messages_come_from_the_api_or_s3() -> None:
    import requests

    def response(status: int, body: bytes) -> requests.Response:
        made = requests.Response()
        made.status_code = status
        made._content = body
        return made

    api = response(415, b'{"Code": "UnsupportedMediaTypeError", "Message": "file: not an image"}')
    assert cli._error_message(api) == "file: not an image"
    s3 = response(403, b"<Error><Code>AccessDenied</Code><Message>Policy expired</Message></Error>")
    assert cli._error_message(s3) == "Policy expired"


def test_edit_options_map_to_the_patch_body() -> None:
    def body(*options: str) -> dict[str, Any]:
        return cli.edit_body(cli.parse_args(["edit", "ID", *options]))

    assert body("--title", "T", "--description", "", "--tags", "A, b") == {
        "title": "T",
        "description": "",
        "tags": ["A", "b"],
    }
    assert body("--metadata", '{"camera": "x"}') == {"metadata": {"camera": "x"}}
    assert body("--clear-metadata", "--tags", "") == {"metadata": None, "tags": []}
    for options, message in [
        ((), "nothing to change"),
        (("--metadata", "{nope"), "--metadata: not valid JSON"),
        (("--metadata", "[1]"), "--metadata: must be a JSON object"),
    ]:
        with pytest.raises(cli.ApiError, match=message):
            body(*options)
    with pytest.raises(SystemExit):
        body("--metadata", "{}", "--clear-metadata")


class EditApi(cli.ApiClient):
    """Records the PATCH; a stale ``If-Match`` is the API's 412."""

    calls: ClassVar[list[tuple[str, str, Any, Any]]] = []

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        EditApi.calls.append((method, path, body, headers))
        if (headers or {}).get("If-Match") == '"1"':
            raise cli.ApiError(412, 'If-Match: the image is at version "2" now')
        return {"image_id": "ID", "version": 3, **(body or {})}


@pytest.mark.parametrize(
    ("if_match", "sent", "status"),
    [
        (None, {}, 0),
        ("2", {"If-Match": '"2"'}, 0),
        ('"1"', {"If-Match": '"1"'}, 1),
        ("*", {"If-Match": "*"}, 0),
    ],
)
def test_edit_sends_the_patch_with_if_match(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    if_match: str | None,
    sent: dict[str, str],
    status: int,
) -> None:
    monkeypatch.setattr(cli, "ApiClient", EditApi)
    EditApi.calls = []
    options = ["--if-match", if_match] if if_match else []
    assert cli.main(["edit", "ID", "--user", "alice", "--title", "New", *options]) == status
    assert EditApi.calls == [("PATCH", "/images/ID", {"title": "New"}, sent)]
    err = capsys.readouterr().err
    assert ('edited ID: ETag "3"' if status == 0 else "412: If-Match") in err
