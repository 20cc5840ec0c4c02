"""The API's OpenAPI 3 document (``chalicelib/openapi.yaml``), served by ``GET /openapi.json``.

The document lives in ``chalicelib/`` so that ``chalice package`` ships it inside the
Lambda. It is read once per process and cached. This module imports only PyYAML, so
serving the document does not load Pillow or boto3's clients.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

DOCUMENT_PATH = Path(__file__).resolve().with_name("openapi.yaml")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document as a JSON-ready dict (parsed once per process).

    Raises:
        OSError: the file is missing (a packaging mistake).
        ValueError: the file is not a YAML mapping.
    """
    with DOCUMENT_PATH.open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    if not isinstance(document, dict):
        raise ValueError(f"{DOCUMENT_PATH} is not a YAML mapping")
    return document
