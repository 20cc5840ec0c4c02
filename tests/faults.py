"""Fault injection beyond ``tests/invariants.py``: faults aimed at one S3 key, attempts
inside botocore's retry loop that lose their answer after (or without) being applied,
and transactions applied by the test at a moment it chooses (a commit that lands after
the service's read timeout).

Everything goes through botocore's event hooks on the service's own clients, as in
``tests/invariants.py``; the state is changed behind the service's back only through a
fresh client (``boto3.client``), which ``mock_aws`` serves from the same backend.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.exceptions import ReadTimeoutError

from tests.invariants import Injection, _register

#: What one attempt of :func:`script_attempts` does: ``"lost"`` (raise a read timeout, the
#: request never reaches the emulator), ``"applied, lost"`` (apply the request through a
#: fresh client, then raise a read timeout), ``"send"`` (let it through), or an exception
#: to raise instead of sending (an error answer: botocore's retry mode sees it).
Attempt = str | Callable[[], Exception]


def lost() -> Exception:
    """A read timeout: the request was sent, no answer came back."""
    return ReadTimeoutError(endpoint_url="http://injected.invalid")


def inject_on_key(
    client: Any,
    operation: str,
    wanted: Callable[[str], bool],
    error: Callable[[], Exception],
    *,
    after_call: bool = False,
) -> Injection:
    """Make ``client``'s ``operation`` raise ``error()`` for the keys ``wanted`` picks
    (``Key`` of an S3 call), before it is sent or, with ``after_call``, after it took
    effect. Deterministic whatever the order of concurrent calls; ``calls`` lists the
    keys that failed."""
    keys: list[Any] = []

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["injected_key"] = params.get("Key", "")

    def fail(context: dict[str, Any], **_: Any) -> None:
        key = str(context.get("injected_key", ""))
        if wanted(key):
            keys.append(key)
            raise error()

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-parameter-build.{service}.{operation}", remember)
    event = "after-call" if after_call else "before-call"
    injection = _register(client, event, operation, fail, keys)
    return injection


def script_attempts(client: Any, operation: str, attempts: Sequence[Attempt]) -> Injection:
    """Script the attempts of ``client``'s ``operation`` inside botocore's retry loop
    (``before-send``), one entry per attempt over all calls; attempts past the script
    are sent. ``calls`` has one request per attempt seen.

    Only for JSON-protocol operations (DynamoDB): ``"applied, lost"`` replays the
    request's body through a fresh client before raising.
    """
    seen: list[Any] = []
    lock = threading.Lock()

    def attempt(request: Any, **_: Any) -> None:
        with lock:
            seen.append(request)
            number = len(seen) - 1
        if number >= len(attempts):
            return
        action = attempts[number]
        if action == "send":
            return
        if action == "lost":
            raise lost()
        if action == "applied, lost":
            apply_request(client, operation, request)
            raise lost()
        assert callable(action), action
        raise action()

    return _register(client, "before-send", operation, attempt, seen)


def apply_request(client: Any, operation: str, request: Any) -> Any:
    """Send the API call of ``request`` (a JSON-protocol request) through a fresh client
    of the same service: what the emulator would have done with it."""
    params = json.loads(request.body)
    params.pop("ClientRequestToken", None)
    return apply_call(client, operation, params)


def apply_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
    """Make the call ``operation(**params)`` through a fresh client of ``client``'s
    service (no injected hooks)."""
    fresh = boto3.client(client.meta.service_model.service_name)
    method = fresh.meta.method_to_api_mapping
    name = next(python for python, api in method.items() if api == operation)
    return getattr(fresh, name)(**params)


class CapturedCalls:
    """The API parameters of every call of ``client``'s ``operation`` (as the service
    built them), so a test can apply one itself later: ``apply(0)``."""

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._operation = operation
        self.params: list[dict[str, Any]] = []
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-parameter-build.{service}.{operation}", self._capture)

    def _capture(self, params: dict[str, Any], **_: Any) -> None:
        self.params.append(copy.deepcopy(params))

    def apply(self, index: int) -> Any:
        """Apply call ``index`` now, through a fresh client."""
        params = dict(self.params[index])
        params.pop("ClientRequestToken", None)
        return apply_call(self._client, self._operation, params)


def at_call(client: Any, operation: str, number: int, action: Callable[[], None]) -> Injection:
    """Run ``action()`` just before call ``number`` (0-based) of ``client``'s
    ``operation`` is sent (``before-call``; an earlier hook that raises skips it)."""
    calls: list[Any] = []

    def run(**_: Any) -> None:
        calls.append(None)
        if len(calls) - 1 == number:
            action()

    return _register(client, "before-call", operation, run, calls)


def drained(executor: ThreadPoolExecutor) -> None:
    """Wait until every task already submitted to ``executor`` has finished."""
    workers = executor._max_workers
    barrier = threading.Barrier(workers + 1)
    futures = [executor.submit(barrier.wait, 30) for _ in range(workers)]
    barrier.wait(30)
    for future in futures:
        future.result()
