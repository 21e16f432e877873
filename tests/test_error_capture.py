"""Error capture with the real sentry-sdk against a local recorder: errors reach it, and no byte
sent holds a value of the request, an exception's message, a local variable or a credential."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import sentry_sdk
from support.envelopes import Envelopes, recording_sentry

from chaos_pyfunc import error_capture

MARKER = "ZQX-MARKER-7731"


@pytest.fixture
def sentry() -> Iterator[Envelopes]:
    with recording_sentry() as envelopes:
        assert error_capture.start(envelopes.dsn, "test", "chaos-pyfunc@test")
        try:
            yield envelopes
        finally:
            sentry_sdk.flush(timeout=10)
            sentry_sdk.get_client().close()


def test_an_error_is_sent_without_its_message_its_locals_or_the_request(sentry: Envelopes) -> None:
    customer = {"job_type": MARKER}  # a local variable holding customer data
    try:
        raise ValueError(f"cannot score {customer}")
    except ValueError:
        logging.getLogger("chaos_pyfunc.http.gateway").exception("MLflow's app failed: %s", MARKER)
    logging.getLogger("chaos_pyfunc.scoring.socio_eco").warning("reading socio_eco failed: %s",
                                                                "OperationalError")
    logging.getLogger("mlflow.models.utils").warning("Found extra inputs %s", MARKER)  # not worth an event
    sentry_sdk.flush(timeout=10)
    events = sentry.events()
    assert len(events) == 2, [e[:300] for e in sentry.received]
    assert b"ValueError" in events[0] and b"MLflow's app failed" in events[0]
    assert b"reading socio_eco failed" in events[1]
    assert MARKER.encode() not in sentry.all_bytes()


def test_without_a_dsn_nothing_starts() -> None:
    assert error_capture.start("", "test") is False


def test_scrub_keeps_the_type_and_frames_and_drops_the_rest() -> None:
    event = {"level": "error", "logger": "chaos_pyfunc.scoring.model",
             "request": {"url": f"/x?{MARKER}", "headers": {"Authorization": MARKER}},
             "exception": {"values": [{"type": "KeyError", "value": MARKER, "stacktrace": {
                 "frames": [{"function": "score", "vars": {"row": MARKER}, "context_line": MARKER}]}}]},
             "logentry": {"message": "failed: %s", "params": [MARKER]}, "breadcrumbs": [MARKER],
             "extra": {"x": MARKER}}
    scrubbed = error_capture.scrub(event)
    assert scrubbed is not None and MARKER not in repr(scrubbed)
    assert scrubbed["exception"]["values"][0]["type"] == "KeyError"
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"] == [{"function": "score"}]
    assert scrubbed["logentry"] == {"message": "failed: %s"}


def test_an_exception_that_ends_a_thread_is_sent(sentry: Envelopes) -> None:
    def dies() -> None:
        raise RuntimeError(MARKER)

    thread = threading.Thread(target=dies, name="a-writer")
    thread.start()
    thread.join()
    sentry_sdk.flush(timeout=10)
    (event,) = sentry.events()
    assert b"RuntimeError" in event and b"threading" in event  # the integration's mechanism
    assert MARKER.encode() not in sentry.all_bytes()
