"""The HTTP front of the scoring server: MLflow's scoring app, wrapped in a thin ASGI layer.

MLflow's app speaks the scoring protocol. What it does not do, this layer does:

- a body over ``max_body_bytes`` is refused with 413 before it is read whole, and a request of
  more than ``max_rows`` rows with 413 before MLflow parses it; malformed JSON gets a 400
  naming the field;
- a body not received whole within ``body_timeout_seconds`` gets 408 and its connection is
  closed; while it arrives it holds no scoring slot, only its bytes in a budget shared by all the
  bodies being received (503 past it);
- past ``max_in_flight`` requests being scored, new ones get 503 at once (load shedding), and
  none waits longer than ``request_timeout_seconds`` (504);
- every error answer is rewritten to ``{"error_code", "message"}`` with a message of ours:
  MLflow's own repeat the input rows (customer data) and carry stack traces;
- one access log line per request, with no body, query string or values in it, and MLflow's
  warnings stripped of what they quote of a request;
- ``/openapi.json`` describes the real API (FastAPI's default one knows nothing of the body),
  and FastAPI's ``/docs`` and ``/redoc`` pages are not served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import request_body, schema
from chaos_pyfunc.contract.answers import (
    Refusal,
    canned,
    error_body,
    error_code_of,
    quiet_mlflow_quotes,
    safe_error,
)
from chaos_pyfunc.contract.request_body import count_rows, one_customer_as_records
from chaos_pyfunc.http.auth import KeyRing
from chaos_pyfunc.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from chaos_pyfunc.http.metrics import Metrics
from chaos_pyfunc.http.observer import Answered, Observer
from chaos_pyfunc.http.shutdown import ShutdownClock
from chaos_pyfunc.predlog.prediction_log import CONTACT_IDS, REQUEST_ID, PredictionLog

log = logging.getLogger(__name__)
# A caller's request id is taken as it is only if it is plainly an id (it is logged and echoed).
PLAIN_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HIDDEN_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
OPEN_PATHS = frozenset({"/ping", "/health"})  # the probes: no API key
UNAUTHENTICATED = ("a valid API key is required: send the header Authorization: Bearer <key>")
BUSY = "the server is busy; retry in a second"
SHUTTING_DOWN = "the server is shutting down; retry in a second"


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_rows: int
    max_reason_rows: int
    max_in_flight: int
    request_timeout_seconds: float
    body_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.max_body_bytes, settings.max_rows, settings.max_reason_rows,
                   settings.max_in_flight, settings.request_timeout_seconds, settings.body_timeout_seconds)

    @property
    def receiving_bytes(self) -> int:
        """The bytes of all the bodies being received at once: as many full bodies as are scored."""
        return self.max_in_flight * self.max_body_bytes


class BodyBudget:
    """The bytes of the request bodies being received, all connections together, under a bound.

    A body holds no scoring slot while it arrives (a slow client would hold one until its body
    deadline, and with a few others shut every client out): its memory is bounded here instead.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes in, unless that would pass the bound."""
        if self.taken + size > self.limit:
            return False
        self.taken += size
        return True

    def give_back(self, size: int) -> None:
        self.taken -= size


class Gateway:
    """MLflow's scoring app behind limits, load shedding, timeouts and safe error answers."""

    def __init__(self, app: ASGIApp, limits: Limits, openapi: dict[str, Any],
                 model: dict[str, str | None] | None = None, keys: KeyRing | None = None,
                 metrics: Metrics | None = None, metrics_here: bool = True,
                 shutdown: ShutdownClock | None = None) -> None:
        quiet_mlflow_quotes()
        self.app = app
        self.limits = limits
        self.receiving = BodyBudget(limits.receiving_bytes)
        self.keys = keys  # None: every client is let in (the embedded default)
        self.in_flight = 0
        self.metrics = metrics or Metrics()
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self.metrics.describe_model(model or {})
        self._metrics_here = metrics_here  # False: /metrics is on its own port (metrics_port)
        self.prediction_log: PredictionLog | None = None  # written out at the shutdown
        # The shutdown's deadline (serve.py starts it at SIGTERM): what is left of it after the
        # drain is all the writing out gets.
        self.shutdown = shutdown or ShutdownClock(Settings().shutdown_timeout_seconds)
        self._openapi = json.dumps(openapi).encode()
        # Which model answers (serve.ServedModel): GET /model, and X-Model-Version on every answer.
        self._model = json.dumps(model or {}).encode()
        version = (model or {}).get("version")
        self._version_header = [(b"x-model-version", str(version).encode())] if version else []
        # Counts and writes what each request leaves; serve.py starts its thread.
        self.observer = Observer(self.metrics, None if version is None else str(version))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._at_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        status, rows, client = 0, None, None
        given = header(scope, b"x-request-id")
        request_id = given if PLAIN_ID.fullmatch(given) else os.urandom(16).hex()
        echoed = [*self._version_header, (b"x-request-id", request_id.encode())]
        REQUEST_ID.set(request_id)  # this request's task only: the prediction log reads it

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *echoed]}
            await send(message)

        try:
            if self.keys is not None and path not in OPEN_PATHS:
                client = self.keys.identify(header(scope, b"authorization"))
                if client is None:  # the body, if any, is not read: the connection closes
                    await respond(sent, 401, error_body("UNAUTHENTICATED", UNAUTHENTICATED),
                                  close=method not in ("GET", "HEAD"),
                                  extra=[(b"www-authenticate", b'Bearer realm="chaos"')])
                    return
            if path == "/invocations" and method == "POST":
                rows = await self._invocations(scope, receive, sent)
            elif path == "/appetence" and method == "POST":
                rows = await self._invocations(scope, receive, sent, single=True)
            elif path == "/appetence":
                await respond(sent, 405, canned(405), extra=[(b"allow", b"POST")])
            elif path == "/openapi.json" and method == "GET":
                await respond(sent, 200, self._openapi)
            elif path == "/metrics" and method == "GET" and self._metrics_here:
                await respond(sent, 200, self.metrics.exposition(), content_type=METRICS_CONTENT_TYPE)
            elif path == "/model":
                if method == "GET":
                    await respond(sent, 200, self._model)
                else:
                    await respond(sent, 405, canned(405), extra=[(b"allow", b"GET")])
            elif path in HIDDEN_PATHS:
                await respond(sent, 404, canned(404))
            elif path == "/version" and method == "GET":  # MLflow labels its plain text JSON
                await self._answer(sent, scope, (await self._run(scope, receive)).as_text())
            else:
                await self._answer(sent, scope, await self._run(scope, receive))
        except asyncio.CancelledError:  # the shutdown's drain is over (shutdown.py)
            if not status:  # ours, in JSON, rather than uvicorn's bare 500
                await respond(sent, 503, error_body("TEMPORARILY_UNAVAILABLE", SHUTTING_DOWN),
                              retry_after=True, close=True)
            raise
        finally:
            self._observe(request_id, method, path, status, rows, time.perf_counter() - started, client)

    def _observe(self, request_id: str, method: str, path: str, status: int, rows: int | None,
                 seconds: float, client: str | None) -> None:
        """The request, for its metrics and its access line (observer.py: off the request's way)."""
        self.observer.answered(Answered(time.time(), request_id, method, path, status, rows, seconds, client))

    def _at_shutdown(self, send: Send) -> Send:
        """The lifespan's send, writing the access lines and the prediction log's rows still
        queued before the shutdown completes: uvicorn has finished the requests in flight by
        then, and it ends the process with the signal it caught right after."""

        async def shutting_down(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await asyncio.to_thread(self.observer.close, self.shutdown.remaining())
                if self.prediction_log is not None:
                    await asyncio.to_thread(self.prediction_log.close, timeout=self.shutdown.remaining())
            await send(message)

        return shutting_down

    async def _invocations(self, scope: Scope, receive: Receive, send: Send,
                           single: bool = False) -> int | None:
        """POST /invocations; with ``single``, POST /appetence: one flat customer object, taken
        through the very same path as a one-row dataframe_records request."""
        limits = self.limits
        try:
            body = await read_body(scope, receive, limits.max_body_bytes, limits.body_timeout_seconds,
                                   self.receiving)
        except Refusal as refusal:  # the rest of the body is not read: the connection cannot be reused
            await refuse(send, refusal, close=True)
            return None
        # The slot only now, the body in hand: a client still sending it holds none.
        if self.in_flight >= limits.max_in_flight:
            await refuse(send, Refusal(503, BUSY))
            return None
        self.in_flight += 1
        inner: asyncio.Future[Captured] | None = None
        try:
            content_type = media_type(scope)
            if single:
                if content_type != "application/json":
                    raise Refusal(415, "Content-Type must be application/json, in UTF-8")
                body = one_customer_as_records(body)
                if (query := query_reasons(scope)) is not None:  # /appetence?reasons=3
                    body = json.dumps({**json.loads(body), "params": {schema.REASONS: query}}).encode()
                scope = {**scope, "path": "/invocations", "raw_path": b"/invocations"}
            parsed = await count_rows(body, content_type)
            rows = parsed.rows
            CONTACT_IDS.set(parsed.contact_ids)  # this request's task: the prediction log reads them
            if rows > limits.max_rows:
                raise Refusal(413, f"{rows} rows: at most {limits.max_rows} per request")
            if parsed.reasons and rows > limits.max_reason_rows:
                raise Refusal(413, f"{rows} rows with params.reasons: at most {limits.max_reason_rows} per "
                                   "request with reason codes; send fewer rows, or score a file with "
                                   "chaos score --reasons")
            if rows == 0 and content_type == "application/json":
                await respond(send, 200, b'{"predictions": []}')
                return 0
            inner = asyncio.ensure_future(self._run(scope, replaying(body, receive)))
            # MLflow predicts in a worker thread, which a timeout cannot stop: the wait is
            # abandoned, not the work, and the slot is freed only when the work is done.
            captured = await asyncio.wait_for(asyncio.shield(inner), limits.request_timeout_seconds)
            if parsed.reasons:
                captured.baseline_once()
            await self._answer(send, scope, captured.as_single() if single else captured)
            return rows
        except Refusal as refusal:
            await refuse(send, refusal)
            return None
        except TimeoutError:
            await respond(send, 504, canned(504), retry_after=True)
            return None
        finally:
            if inner is not None and not inner.done():
                inner.add_done_callback(self._release_late)
            else:
                self.in_flight -= 1

    def _release_late(self, inner: asyncio.Future[Captured]) -> None:
        self.in_flight -= 1
        if not inner.cancelled() and inner.exception() is not None:
            log.error("an abandoned request failed: %s", type(inner.exception()).__name__)

    async def _run(self, scope: Scope, receive: Receive) -> Captured:
        """MLflow's app on this request, its answer kept in memory (answers are small)."""
        captured = Captured()
        try:
            await self.app(scope, receive, captured)
        except Exception as exc:  # answered 500 below, as ours; its text may quote the request
            log.error("MLflow's app failed: %s\n%s", type(exc).__name__,
                      "".join(traceback.format_tb(exc.__traceback__)))
            captured.status = 500
        return captured

    async def _answer(self, send: Send, scope: Scope, captured: Captured) -> None:
        """Pass a success through; rewrite an error to a safe answer."""
        status, content = captured.status, b"".join(captured.chunks)
        if status >= 400:
            if status >= 500:
                log.warning("%s %s: MLflow answered %d (%s)", scope["method"], scope["path"],
                            status, error_code_of(content))
            status, content = safe_error(status, content)
            allow = [(k, v) for k, v in captured.headers if k.lower() == b"allow"]  # with a 405
            await respond(send, status, content, retry_after=status in (503, 504), extra=allow)
            return
        headers = [(k, v) for k, v in captured.headers if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


class Captured:
    """An ASGI ``send`` that keeps the response instead of sending it."""

    def __init__(self) -> None:
        self.status = 500  # if the app sends nothing at all
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def as_single(self) -> Captured:
        """A successful one-row answer as /appetence gives it: ``{"appetence": 0.82}`` (with its
        reasons and baseline, when asked)."""
        if self.status == 200:
            answer = json.loads(b"".join(self.chunks))
            (row,) = answer["predictions"]
            single = {schema.OUTPUT_COLUMN: row[schema.OUTPUT_COLUMN]}
            if schema.REASONS in row:
                single |= {schema.REASONS: row[schema.REASONS], schema.BASELINE: answer[schema.BASELINE]}
            self.chunks = [json.dumps(single).encode()]
        return self

    def baseline_once(self) -> None:
        """A successful answer with reasons: the baseline, the same for every row, given once
        beside the predictions; a model that gave none (a version registered before reasons:
        MLflow drops params its signature does not declare) is a 400."""
        if self.status != 200:
            return
        answer = json.loads(b"".join(self.chunks))
        rows = answer["predictions"]
        if rows and schema.REASONS not in rows[0]:
            self.status, self.headers = 400, [(b"content-type", b"application/json")]
            self.chunks = [error_body("BAD_REQUEST", "params.reasons: this model version gives no reasons "
                                                     "(it was registered before they existed)")]
            return
        baseline = rows[0].pop(schema.BASELINE, None) if rows else None
        for row in rows[1:]:
            row.pop(schema.BASELINE, None)
        self.chunks = [json.dumps({"predictions": rows, schema.BASELINE: baseline}).encode()]

    def as_text(self) -> Captured:
        """The same answer as plain text."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != b"content-type"]
        self.headers.append((b"content-type", b"text/plain; charset=utf-8"))
        return self


def query_reasons(scope: Scope) -> int | None:
    """/appetence's ``?reasons=N``, checked; None when the query does not ask."""
    given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(schema.REASONS)
    return None if given is None else request_body.asked(given[-1], schema.REASONS, text=True)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then whatever the client sends next."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def media_type(scope: Scope) -> str:
    """The request's Content-Type without its parameters, lower case."""
    return header(scope, b"content-type").split(";")[0].strip().lower()


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


async def read_body(scope: Scope, receive: Receive, limit: int, seconds: float, budget: BodyBudget) -> bytes:
    """The whole request body, refused as soon as it is known to exceed ``limit`` (413), when a
    chunk would pass the ``budget`` of the bodies being received (503), or when it is not whole
    within ``seconds`` (408).

    A deadline for the whole body, not an idle timeout between reads: an idle timeout lets a client
    sending one byte every (timeout - epsilon) hold its connection forever.
    """
    declared = header(scope, b"content-length")
    too_big = Refusal(413, f"body larger than {limit} bytes; send fewer rows per request")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise Refusal(400, "the client went away before sending the whole body")
                chunk = message.get("body", b"")
                if size + len(chunk) > limit:
                    raise too_big
                if not budget.take(len(chunk)):
                    raise Refusal(503, BUSY)
                size += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise Refusal(408, f"the request body was not complete within {seconds:g} s") from None
    finally:
        budget.give_back(size)


async def refuse(send: Send, refusal: Refusal, close: bool = False) -> None:
    await respond(send, refusal.status, error_body(refusal.error_code, refusal.message),
                  retry_after=refusal.status in (503, 504), close=close)


async def respond(send: Send, status: int, content: bytes, retry_after: bool = False,
                  close: bool = False, extra: list[tuple[bytes, bytes]] | None = None,
                  content_type: str = "application/json") -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(content)).encode())]
    headers += extra or []
    if retry_after:
        headers.append((b"retry-after", b"1"))
    if close:  # the rest of a refused body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
