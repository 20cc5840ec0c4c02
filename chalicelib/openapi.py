"""The API's OpenAPI 3 document (``chalicelib/openapi.yaml``), served by ``GET /openapi.json``.

The document lives in ``chalicelib/`` so that ``chalice package`` ships it inside the
Lambda. It is read once per process and cached. PyYAML is imported on the first
request for the document, not when the app is imported: no cold start pays for it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

DOCUMENT_PATH = Path(__file__).resolve().with_name("openapi.yaml")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a JSON-ready dict (parsed once per process).

    Raises:
        OSError: the file is missing (a packaging mistake).
        ValueError: the file is not a YAML mapping.
    """
    import yaml  # deferred: only /openapi.json needs it

    with DOCUMENT_PATH.open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    if not isinstance(document, dict):
        raise ValueError(f"{DOCUMENT_PATH} is not a YAML mapping")
    return document
