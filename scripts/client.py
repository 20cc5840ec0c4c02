"""Command-line client of the image service: upload, list, download, edit, delete.

Usage (``--api`` defaults to ``$IMAGE_API_URL``, else ``make run``'s http://127.0.0.1:8000;
``make install`` installs it as ``.venv/bin/image-client``, which runs from any folder)::

    image-client upload PHOTO.jpg FOLDER/ --user alice --tags trip,beach
    image-client list --user alice --tags beach --from 2026-01-01 --title sea
    image-client download IMAGE_ID -o saved/        # a folder: keeps the image's filename
    image-client edit IMAGE_ID --user alice --title "At dusk" --tags sunset,beach
    image-client delete IMAGE_ID --user alice

``upload`` takes files and folders (folders are walked recursively and contribute the
files whose extension is an image type the service accepts; a file named on the command
line is always sent, and the service judges it). Each file goes through a direct upload:
``POST /uploads`` (its name, size and SHA-256, so the service checks the bytes it gets),
then a ``multipart/form-data`` POST of the presigned fields and the file straight to
S3, streamed from disk (``requests_toolbelt``'s ``MultipartEncoder``: a 50 MiB file is
never held in memory), then ``POST /uploads/{id}/complete``. Several files upload at
once (``--jobs``, default 4), each with its progress bar and one for the whole batch
(``rich``). A failure is reported with the API's ``Message`` and does not stop the
rest; the exit status is the number of files that failed (at most 125), 0 when all
were uploaded. A file's bar says "processing" while the service processes it
(``complete``).

``download -o PATH``: a PATH ending in ``/`` or naming a folder is a folder (created when
missing) and the file keeps its name; an existing file is overwritten only with
``--force``.

Identity: ``--user`` (or ``$IMAGE_USER``) is sent as ``X-User-Id`` (``AUTH_MODE=none``),
``--token`` (or ``$IMAGE_API_TOKEN``) as ``Authorization: Bearer`` (``AUTH_MODE=jwt``;
``make token`` prints one); ``upload`` and ``delete`` without either stop at once, naming
the flags. For ``list``, ``--user`` is the owner filter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

DEFAULT_API = "http://127.0.0.1:8000"
#: Extensions a folder walk picks up (the types the service accepts).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".heic", ".heif", ".avif"})
#: Largest exit status that still reads as a count of failures (126+ mean other things).
MAX_EXIT_STATUS = 125
#: Seconds to wait for the API to answer one call (processing an image may take a while).
API_TIMEOUT = 120.0
#: After a 202 from ``complete``: poll ``GET /uploads/{id}`` this often (seconds), at
#: most this many times (3 minutes: the processing lease).
COMPLETE_POLL_SECONDS = 3.0
COMPLETE_POLLS = 60
#: Seconds to wait for S3 between bytes of an upload or a download.
TRANSFER_TIMEOUT = 300.0
CHUNK_BYTES = 1024 * 1024

stdout = Console()
stderr = Console(stderr=True)


class ApiError(Exception):
    """The API (or S3) refused a call.

    Attributes:
        status: HTTP status (0: no answer).
        message: the error's ``Message`` as the API wrote it.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        message = payload.get("Message") or payload.get("message")
        if message:
            return str(message)
    text = response.text.strip()
    if "<Message>" in text:  # an S3 XML error
        return text.split("<Message>", 1)[1].split("</Message>", 1)[0]
    return text[:200] or response.reason or "request failed"


@dataclass
class ApiClient:
    """The image service's HTTP API, one ``requests.Session`` per thread.

    Args:
        base_url: the API's base URL, e.g. ``http://127.0.0.1:8000``.
        user: sent as ``X-User-Id`` when given.
        token: sent as ``Authorization: Bearer TOKEN`` when given.
    """

    base_url: str
    user: str | None = None
    token: str | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def session(self) -> requests.Session:
        """This thread's session (connection pool)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.user:
            headers["X-User-Id"] = self.user
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Call ``path`` (``/images``...) with extra ``headers``; return its JSON answer.

        Raises:
            ApiError: a non-2xx answer (with the API's ``Message``) or no answer.
        """
        try:
            response = self.session.request(
                method,
                self.base_url.rstrip("/") + path,
                json=body,
                params=params,
                headers={**self._headers(), **(headers or {})},
                timeout=API_TIMEOUT,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise ApiError(0, f"cannot reach the API at {self.base_url}: {error}") from error
        if not response.ok:
            raise ApiError(response.status_code, _error_message(response))
        return response.json() if response.content else None

    def post_to_bucket(
        self, upload: dict[str, Any], path: Path, on_bytes: Callable[[int], None]
    ) -> None:
        """POST ``path`` to a presigned ``upload`` (``fields`` then ``file_field``),
        streamed from disk; ``on_bytes(n)`` is called with the body bytes sent so far.

        Raises:
            ApiError: S3 refused the POST (its XML ``Message``) or did not answer.
        """
        with path.open("rb") as stream:
            fields: list[tuple[str, Any]] = [
                (str(name), str(value)) for name, value in upload.get("fields", {}).items()
            ]
            fields.append(
                (upload.get("file_field", "file"), (path.name, stream, "application/octet-stream"))
            )
            encoder = MultipartEncoder(fields=fields)
            monitor = MultipartEncoderMonitor(encoder, lambda m: on_bytes(m.bytes_read))
            try:
                response = self.session.post(
                    upload["url"],
                    data=monitor,
                    headers={"Content-Type": monitor.content_type},
                    timeout=TRANSFER_TIMEOUT,
                )
            except requests.RequestException as error:
                raise ApiError(0, f"cannot reach storage: {error}") from error
        if not response.ok:
            raise ApiError(
                response.status_code, f"storage refused the upload: {_error_message(response)}"
            )

    def download(self, url: str, target: Path) -> int:
        """Stream ``url`` (a presigned GET) into ``target``; return the bytes written.

        Raises:
            ApiError: S3 refused or did not answer (``target`` is not left behind).
        """
        try:
            with requests.get(url, stream=True, timeout=TRANSFER_TIMEOUT) as response:
                if not response.ok:
                    raise ApiError(response.status_code, _error_message(response))
                written = 0
                with target.open("wb") as out:
                    for chunk in response.iter_content(CHUNK_BYTES):
                        out.write(chunk)
                        written += len(chunk)
                return written
        except requests.RequestException as error:
            target.unlink(missing_ok=True)
            raise ApiError(0, f"download failed: {error}") from error
        except ApiError:
            target.unlink(missing_ok=True)
            raise


def collect_files(paths: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The files to upload: each file as given, each folder's image files recursively
    (sorted, hidden files and folders skipped).

    Returns:
        ``(files, problems)``; a problem names a path that does not exist.
    """
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if found.is_file() and not hidden and found.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{raw}: no such file or folder")
    return list(dict.fromkeys(files)), problems


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def exit_status(failures: int) -> int:
    """The exit status for ``failures`` failed files: the count, at most 125."""
    return min(max(failures, 0), MAX_EXIT_STATUS)


def upload_request(
    path: Path, user: str | None, title: str | None, tags: Sequence[str]
) -> dict[str, Any]:
    """The JSON body of ``POST /uploads`` for ``path`` (name, size, SHA-256, fields)."""
    body: dict[str, Any] = {
        "filename": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": sha256_of(path),
    }
    if user:
        body["user_id"] = user
    if title:
        body["title"] = title
    if tags:
        body["tags"] = list(tags)
    return body


def upload_file(
    client: ApiClient,
    path: Path,
    title: str | None,
    tags: Sequence[str],
    on_bytes: Callable[[int], None],
    on_processing: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Upload one file through a direct upload; return the image's record.
    ``on_bytes(n)`` follows the transfer to S3; ``on_processing()`` is called once the
    bytes are in, before ``complete``.

    Raises:
        ApiError: any step refused (the message is the API's or S3's).
        OSError: the file cannot be read.
    """
    started = client.call("POST", "/uploads", body=upload_request(path, client.user, title, tags))
    client.post_to_bucket(started["upload"], path, on_bytes)
    on_processing()
    upload_id = started["upload_id"]
    answer: dict[str, Any] = client.call("POST", f"/uploads/{upload_id}/complete")
    # 202: the S3 event is still processing it; its status says when it is done.
    for _ in range(COMPLETE_POLLS):
        if answer.get("status") != "pending":
            break
        time.sleep(COMPLETE_POLL_SECONDS)
        answer = client.call("GET", f"/uploads/{upload_id}")
    if answer.get("status") == "ready":
        record: dict[str, Any] = answer["image"]
        return record
    if answer.get("status") == "rejected":
        raise ApiError(400, answer["error"]["Message"])
    if "status" in answer:
        raise ApiError(409, f"upload {upload_id} is {answer['status']}")
    return answer


@dataclass
class UploadOutcome:
    """What happened to one file: its record, or why it failed."""

    path: Path
    record: dict[str, Any] | None = None
    error: str | None = None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def upload_all(
    client: ApiClient,
    files: Sequence[Path],
    title: str | None,
    tags: Sequence[str],
    jobs: int,
    console: Console = stderr,
) -> list[UploadOutcome]:
    """Upload ``files`` ``jobs`` at a time, with a bar per file and one overall.

    Never raises for one file's failure: it is that file's :class:`UploadOutcome`.
    """
    sizes = {path: path.stat().st_size if path.exists() else 0 for path in files}
    with _progress(console) as progress:
        overall = progress.add_task(f"[bold]{len(files)} file(s)", total=sum(sizes.values()))
        lock = threading.Lock()

        def run(path: Path) -> UploadOutcome:
            task: TaskID = progress.add_task(path.name, total=sizes[path] or 1)
            sent = 0

            def on_bytes(body_bytes: int) -> None:
                # The body is the file plus a little multipart framing: count up to its size.
                nonlocal sent
                now = min(body_bytes, sizes[path])
                with lock:
                    progress.update(task, completed=now)
                    progress.advance(overall, now - sent)
                    sent = now

            def on_processing() -> None:
                with lock:
                    progress.update(
                        task, completed=sizes[path] or 1, description=f"{path.name} processing"
                    )

            try:
                record = upload_file(client, path, title, tags, on_bytes, on_processing)
            except (ApiError, OSError) as error:
                progress.update(task, description=f"[red]{path.name} failed")
                return UploadOutcome(path, error=str(error))
            with lock:
                progress.advance(overall, sizes[path] - sent)
            progress.update(task, completed=sizes[path] or 1, description=f"[green]{path.name}")
            return UploadOutcome(path, record=record)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(run, files))


def _split_tags(text: str | None) -> list[str]:
    return [tag.strip() for tag in (text or "").split(",") if tag.strip()]


def cmd_upload(client: ApiClient, args: argparse.Namespace) -> int:
    """``upload PATH...``: exit status = number of failed files (missing paths count)."""
    files, problems = collect_files(args.paths)
    for problem in problems:
        stderr.print(f"[red]skipped[/red] {problem}")
    if not files:
        stderr.print("nothing to upload")
        return exit_status(len(problems) or 1)
    if not client.user and not client.token:
        stderr.print(f"[red]error[/red] {MISSING_IDENTITY}", highlight=False)
        return 2
    outcomes = upload_all(client, files, args.title, _split_tags(args.tags), args.jobs)
    failed = [outcome for outcome in outcomes if outcome.error]
    failures = len(failed) + len(problems)
    if args.json:
        print(
            json.dumps(
                [{"path": str(o.path), "record": o.record, "error": o.error} for o in outcomes],
                indent=2,
            )
        )
    for outcome in outcomes:
        if outcome.record is not None:
            stderr.print(f"uploaded {outcome.path} -> {outcome.record['image_id']}")
        else:
            stderr.print(f"[red]FAILED[/red] {outcome.path}: {outcome.error}", highlight=False)
    stderr.print(f"{len(outcomes) - len(failed)} uploaded, {failures} failed")
    return exit_status(failures)


def list_params(args: argparse.Namespace) -> dict[str, str]:
    """``GET /images`` query parameters from ``list``'s options."""
    params: dict[str, str] = {}
    tags = _split_tags(args.tags)
    if args.user:
        params["user_id"] = args.user
    if len(tags) == 1:
        params["tag"] = tags[0]
    elif tags:
        params["tags"] = ",".join(tags)
    for name, value in (
        ("date_from", args.date_from),
        ("date_to", args.date_to),
        ("title", args.title),
    ):
        if value:
            params[name] = value
    params["limit"] = str(args.limit)
    return params


def iter_images(client: ApiClient, params: dict[str, str], pages: int | None) -> Iterator[Any]:
    """Every record of the listing, following ``next_token`` for ``pages`` pages (None:
    all)."""
    token: str | None = None
    read = 0
    while True:
        page = client.call(
            "GET", "/images", params={**params, **({"next_token": token} if token else {})}
        )
        yield from page.get("items", [])
        read += 1
        token = page.get("next_token")
        if not token or (pages is not None and read >= pages):
            return


def _size(size: Any) -> str:
    if not isinstance(size, int):
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    """``list``: the filtered listing as a table (or JSON lines with ``--json``)."""
    records = list(iter_images(client, list_params(args), None if args.all else 1))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    stdout.print(listing_table(records, stdout.width))
    return 0


def listing_table(records: Sequence[dict[str, Any]], width: int = 80) -> Table:
    """``list``'s table: one line per image, fitting ``width`` columns (the terminal's).
    The id (36 characters, what ``download``/``delete`` take) is never wrapped or cut;
    filename and title share what is left, cut with an ellipsis; ``created`` is the date
    (``YYYY-MM-DD``). User and tags get columns from 120 columns on (``--json`` has all)."""
    wide = width >= 120
    names = ("filename", "title", *(("user", "tags") if wide else ()))
    # id 36, size up to 10 ("1023.9 KiB"), date 10, one space after each column.
    shared = max(width - 36 - 10 - 10 - (len(names) + 3), 8 * len(names))
    table = Table(title=f"{len(records)} image(s)", box=None, padding=(0, 1, 0, 0))
    table.add_column("id", no_wrap=True, min_width=36)
    for column in names:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=shared // len(names))
    table.add_column("size", no_wrap=True, justify="right")
    table.add_column("created", no_wrap=True)
    for record in records:
        extra = (str(record.get("user_id", "")), ",".join(record.get("tags") or []))
        table.add_row(
            str(record.get("image_id", "")),
            str(record.get("filename") or ""),
            str(record.get("title") or ""),
            *(extra if wide else ()),
            _size(record.get("size_bytes")),
            str(record.get("created_at", ""))[:10],
        )
    return table


def download_target(output: str | None, filename: str) -> Path:
    """Where ``download`` writes: ``output`` (a file, or a folder to put ``filename`` in:
    an existing folder, or a path ending in ``/``), else ``filename`` in the current
    folder. Only the last part of ``filename`` is used."""
    name = Path(filename).name or "image"
    if output is None:
        return Path(name)
    target = Path(output)
    is_folder = output.endswith(("/", os.sep)) or target.is_dir()
    return target / name if is_folder else target


def cmd_download(client: ApiClient, args: argparse.Namespace) -> int:
    """``download ID [-o PATH] [--force]``: the original, saved under its filename by
    default; the folder is created when missing; an existing file is kept unless
    ``--force`` (exit 1, nothing fetched)."""
    view = client.call("GET", f"/images/{args.image_id}", params={"download": "true"})
    target = download_target(args.output, str(view.get("filename") or args.image_id))
    if target.exists() and not args.force:
        stderr.print(
            f"[red]error[/red] {target} exists: add --force to overwrite it", highlight=False
        )
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    written = client.download(view["download_url"], partial)
    partial.replace(target)
    stderr.print(f"saved {target} ({_size(written)})")
    return 0


def edit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PATCH /images/{id}`` body from ``edit``'s options: only the fields given
    (``--tags ""`` empties the list, ``--clear-metadata`` sends ``"metadata": null``).

    Raises:
        ApiError: (status 0) ``--metadata`` is not a JSON object, or nothing to change.
    """
    body: dict[str, Any] = {}
    for name in ("title", "description"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.tags is not None:
        body["tags"] = _split_tags(args.tags)
    if args.clear_metadata:
        body["metadata"] = None
    elif args.metadata is not None:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as error:
            raise ApiError(0, f"--metadata: not valid JSON ({error})") from None
        if not isinstance(metadata, dict):
            raise ApiError(0, '--metadata: must be a JSON object, e.g. {"camera": "X100"}')
        body["metadata"] = metadata
    if not body:
        raise ApiError(
            0,
            "nothing to change: give --title, --description, --tags, --metadata or "
            "--clear-metadata",
        )
    return body


def cmd_edit(client: ApiClient, args: argparse.Namespace) -> int:
    """``edit ID [--title T] [--description D] [--tags a,b] [--metadata JSON |
    --clear-metadata] [--if-match ETAG]``: the owner changes an image's fields; with
    ``--if-match``, only if the image is still at that version (else the API's 412)."""
    body = edit_body(args)
    headers = {}
    if args.if_match:
        etag = args.if_match.strip()
        headers["If-Match"] = etag if etag == "*" or etag.endswith('"') else f'"{etag}"'
    record = client.call("PATCH", f"/images/{args.image_id}", body=body, headers=headers)
    if args.json:
        print(json.dumps(record, indent=2))
    stderr.print(f'edited {args.image_id}: ETag "{record.get("version")}"', highlight=False)
    return 0


def cmd_delete(client: ApiClient, args: argparse.Namespace) -> int:
    """``delete ID``: the owner deletes an image (exit 2 without an identity)."""
    if not client.user and not client.token:
        stderr.print(f"[red]error[/red] {MISSING_IDENTITY}", highlight=False)
        return 2
    answer = client.call("DELETE", f"/images/{args.image_id}")
    stderr.print(f"{answer.get('message', 'deleted')}: {args.image_id}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of ``image-client`` (``python -m scripts.client``)."""
    user = os.environ.get("IMAGE_USER") or None
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=os.environ.get("IMAGE_API_URL") or DEFAULT_API,
        help=f"the API's base URL (default $IMAGE_API_URL or {DEFAULT_API})",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("IMAGE_API_TOKEN") or None,
        help="bearer token for AUTH_MODE=jwt (default $IMAGE_API_TOKEN; `make token`)",
    )
    parser = argparse.ArgumentParser(prog="image-client", description=__doc__.split("\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)

    upload = commands.add_parser("upload", parents=[common], help="upload files and folders")
    upload.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    upload.add_argument(
        "--user", default=user, help="owner of the images (X-User-Id; default $IMAGE_USER)"
    )
    upload.add_argument("--tags", help="comma-separated tags for every image")
    upload.add_argument("--title", help="title for every image")
    upload.add_argument("--jobs", type=int, default=4, help="files at once (default 4)")
    upload.add_argument("--json", action="store_true", help="print the results as JSON")

    listing = commands.add_parser("list", parents=[common], help="list images, newest first")
    listing.add_argument("--user", help="only this user's images")
    listing.add_argument("--tags", help="comma-separated tags, all must match")
    listing.add_argument("--from", dest="date_from", help="from this date (ISO), inclusive")
    listing.add_argument("--to", dest="date_to", help="up to this date (ISO), inclusive")
    listing.add_argument("--title", help="title contains (case-insensitive)")
    listing.add_argument("--limit", type=int, default=20, help="page size, 1-100 (default 20)")
    listing.add_argument("--all", action="store_true", help="follow next_token to the end")
    listing.add_argument("--json", action="store_true", help="print the records as JSON")

    download = commands.add_parser("download", parents=[common], help="download an original")
    download.add_argument("image_id", metavar="ID")
    download.add_argument("-o", "--output", help="file, or folder (ends in / or exists) to save to")
    download.add_argument("--force", action="store_true", help="overwrite an existing file")
    download.add_argument("--user", default=user, help="acting as (X-User-Id; $IMAGE_USER)")

    edit = commands.add_parser(
        "edit", parents=[common], help="edit an image's title, description, tags, metadata"
    )
    edit.add_argument("image_id", metavar="ID")
    edit.add_argument("--user", help="acting as (X-User-Id): the owner")
    edit.add_argument("--title", help="the new title")
    edit.add_argument("--description", help="the new description")
    edit.add_argument("--tags", help='comma-separated tags replacing the list ("" empties it)')
    metadata = edit.add_mutually_exclusive_group()
    metadata.add_argument("--metadata", metavar="JSON", help="a JSON object replacing metadata")
    metadata.add_argument("--clear-metadata", action="store_true", help="remove the metadata")
    edit.add_argument(
        "--if-match",
        metavar="ETAG",
        help='only if the image is still at this version (its ETag, e.g. 3 or "3"; * any)',
    )
    edit.add_argument("--json", action="store_true", help="print the new record as JSON")

    delete = commands.add_parser("delete", parents=[common], help="delete an image (owner)")
    delete.add_argument("image_id", metavar="ID")
    delete.add_argument(
        "--user", default=user, help="acting as (X-User-Id; default $IMAGE_USER): the owner"
    )
    return parser.parse_args(argv)


#: What ``upload`` and ``delete`` say without --user or --token (the API would answer
#: ``X-User-Id: missing``, naming a header the user never typed); exit status 2.
MISSING_IDENTITY = (
    "who are you acting as? pass --user NAME (or set IMAGE_USER) when the API runs with "
    "AUTH_MODE=none, --token TOKEN (or IMAGE_API_TOKEN; `make token`) with AUTH_MODE=jwt"
)

COMMANDS: dict[str, Callable[[ApiClient, argparse.Namespace], int]] = {
    "upload": cmd_upload,
    "list": cmd_list,
    "download": cmd_download,
    "edit": cmd_edit,
    "delete": cmd_delete,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit status (``upload``: failures; others 0 or 1)."""
    args = parse_args(argv)
    user = None if args.command == "list" else args.user
    client = ApiClient(args.api, user=user, token=args.token)
    try:
        return COMMANDS[args.command](client, args)
    except ApiError as error:
        stderr.print(f"[red]error[/red] {error}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
