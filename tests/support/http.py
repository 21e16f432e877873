"""The one POST to the server under test: what every end-to-end test sends goes through here."""

from __future__ import annotations

import json
from typing import Any

import requests


def post(base_url: str, body: Any, content_type: str | None = "application/json", *,
         path: str = "/invocations", headers: dict[str, str] | None = None, timeout: float = 30,
         session: requests.Session | None = None) -> requests.Response:
    """POST ``body`` to ``path``: bytes as they are, anything else written as JSON (NaN included,
    as Python writes it). ``content_type`` None sends no Content-Type at all."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {} if content_type is None else {"Content-Type": content_type}
    return (session or requests).post(f"{base_url}{path}", data=data, headers={**sent, **(headers or {})},
                                      timeout=timeout)
