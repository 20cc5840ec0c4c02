"""Concurrency over real HTTP: parallel uploads and overlapping deletes of the same images.

One ``ImageService`` wired as in production (``AwsClients.from_settings``, see
``EMULATOR_CONFIG`` for the two settings changed) is shared by 16 worker threads, which
upload 200 images (random owners, 0-2 random tags). Half of the images are deleted as
soon as they exist, by two or three threads of the owner at once (released together by a
barrier), a quarter also by another user, while other workers keep uploading.
Afterwards, from outside the service:

- of each group of owner deletes exactly one succeeded and the others got 404; another
  user got 403 (or 404 when the owner was first);
- every surviving image is complete: its image item equals the record returned, the
  items its upload transaction wrote are all there, and its object's bytes have the
  record's SHA-256;
- every deleted image is fully gone: no item carries its id, no object is left;
- nothing else is in the bucket or the table (an image's objects are its original and
  its renditions), and the sweep (no grace period) finds nothing.

The emulator is the session's moto server, which answers one request at a time because
moto's own threaded server can undo committed transactions under concurrency (see
``scripts/emulator.py``). The service's calls from the 16 threads still interleave
freely between requests.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from botocore.config import Config

from chalicelib.errors import ImageServiceError, to_chalice_error
from chalicelib.metadata import ImageRecord
from chalicelib.service import ImageService
from chalicelib.sweep import Sweep
from scripts.emulator import MotoServer
from tests.integration.wiring import png, upload_request, wire_service
from tests.invariants import WrittenKeys, complete_problems, gone_problems, snapshot

UPLOADS = 200
WORKERS = 16
USERS = ("ana", "ben", "cyd", "dee")
STRANGER = "mallory"
TAGS = ("cat", "dog", "sea", "sun", "art", "food")
#: Up to 2 tags: 0 to 3 membership items (two tags and their pair). moto copies the whole
#: table on every transaction, so more items per image make the run much slower (3 tags:
#: twice the time) without exercising anything new.
MAX_TAGS = 2
#: Over the production client config: a pool for every thread, and a read timeout that
#: the serialized emulator's queue cannot reach. With the production 4 s, a request
#: waiting its turn behind dozens of others times out and is retried, and moto, unlike
#: DynamoDB, ignores the retry's ``ClientRequestToken``: that tests moto, not us (the
#: unit tests cover lost answers and retried transactions one by one).
EMULATOR_CONFIG = Config(read_timeout=120, max_pool_connections=4 * WORKERS)


@dataclass
class Plan:
    """One image's fate: who uploads it with which tags, who tries to delete it."""

    index: int
    user: str
    tags: list[str]
    deleters: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What happened: the uploaded record and each deleter's HTTP status."""

    plan: Plan
    record: ImageRecord
    statuses: list[tuple[str, int]]


def _plans(rng: random.Random) -> list[Plan]:
    plans = []
    for index in range(UPLOADS):
        user = USERS[index % len(USERS)]
        plan = Plan(index, user, rng.sample(TAGS, rng.randint(0, MAX_TAGS)))
        if index % 2 == 0:
            plan.deleters = [user] * rng.choice((2, 3)) + ([STRANGER] if index % 4 == 0 else [])
            rng.shuffle(plan.deleters)
        plans.append(plan)
    return plans


def _delete_status(service: ImageService, image_id: str, caller: str) -> int:
    """The HTTP status ``DELETE /images/{image_id}`` by ``caller`` would answer."""
    try:
        service.delete(image_id, caller)
    except ImageServiceError as error:
        return to_chalice_error(error).STATUS_CODE
    return 200


def _all_at_once(calls: list[Callable[[], int]]) -> list[int]:
    """Run ``calls`` in their own threads, released together by a barrier."""
    barrier = threading.Barrier(len(calls))
    results: list[int | BaseException] = [0] * len(calls)

    def run(position: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[position] = calls[position]()
        except BaseException as error:
            results[position] = error

    threads = [threading.Thread(target=run, args=(position,)) for position in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if isinstance(result, int)]


def test_parallel_uploads_and_overlapping_deletes_leave_every_image_complete_or_gone(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
):
    service, clients = wire_service(
        moto_server.endpoint_url, "concurrency", monkeypatch, EMULATOR_CONFIG
    )
    written = WrittenKeys(clients.dynamodb)
    delete_transactions: list[str] = []

    def count_delete_transaction(params: dict[str, Any], **_: Any) -> None:
        if "Delete" in params["TransactItems"][0]:
            delete_transactions.append(params["TransactItems"][0]["Delete"]["Key"]["pk"]["S"])

    clients.dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.TransactWriteItems", count_delete_transaction
    )
    plans = _plans(random.Random(20261121))

    def run(plan: Plan) -> Outcome:
        record = service.upload(upload_request(png(plan.index), plan.user, plan.tags))
        statuses = (
            _all_at_once(
                [
                    lambda caller=caller: _delete_status(service, record.image_id, caller)
                    for caller in plan.deleters
                ]
            )
            if plan.deleters
            else []
        )
        return Outcome(plan, record, list(zip(plan.deleters, statuses, strict=True)))

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(run, plans))

    race_problems = []
    for outcome in outcomes:
        owner = sorted(status for caller, status in outcome.statuses if caller != STRANGER)
        stranger = [status for caller, status in outcome.statuses if caller == STRANGER]
        if owner and owner != [200] + [404] * (len(owner) - 1):
            race_problems.append(f"{outcome.record.image_id}: owner deletes answered {owner}")
        if not set(stranger) <= {403, 404}:
            race_problems.append(f"{outcome.record.image_id}: stranger's delete got {stranger}")
    assert race_problems == []
    deleted_count = sum(1 for outcome in outcomes if outcome.plan.deleters)
    # Deleters raced past the read to the transaction, where DynamoDB's condition decided.
    assert len(delete_transactions) > deleted_count

    state = snapshot(
        clients.s3, clients.dynamodb, service.storage.bucket, service.metadata.table_name
    )
    survivors = [outcome.record for outcome in outcomes if not outcome.plan.deleters]
    deleted = [outcome.record for outcome in outcomes if outcome.plan.deleters]
    problems = [
        problem
        for record in survivors
        for problem in complete_problems(state, record.to_dict(), written.of(record.image_id))
    ] + [
        problem
        for record in deleted
        for key in record.object_keys
        for problem in gone_problems(state, record.image_id, key)
    ]
    assert problems == []
    assert set(state.items) == {record.image_id for record in survivors}
    assert set(state.objects) == {key for record in survivors for key in record.object_keys}
    assert len(survivors) == UPLOADS // 2
    assert Sweep(service, fix=False, grace=timedelta(0)).run(max_slices=None, resume=False).clean
