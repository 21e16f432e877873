"""Unexpected errors to Sentry (sentry-sdk), when ``CHAOS_SENTRY_DSN`` is set; nothing otherwise.

A bank's customer data must never leave: the SDK is told to send no personal data, no local
variables and no request bodies, and every event is stripped before it is sent of what could
still quote a request: the request itself (URL, headers, cookies, query), exception values
(a message may quote input; the type and the stack of frames stay), log messages' arguments,
breadcrumbs and extra data. What is captured: errors logged by the service (a 500, a job that
crashes, a prediction-log batch refused), an exception that ends a thread, and failed reads of
socio_eco (warnings of chaos_pyfunc.scoring.socio_eco).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

ACCESS_LOG = "chaos.access"  # the gateway's line per request
WARNINGS_FROM = ("chaos_pyfunc.scoring.socio_eco",)  # warnings worth an event; other warnings are not


def scrub(event: Any, hint: dict[str, Any] | None = None) -> Any:  # sentry_sdk's Event, a TypedDict
    """The event without anything that may carry customer data or credentials; None drops it."""
    if event.get("level") == "warning" and not str(event.get("logger", "")).startswith(WARNINGS_FROM):
        return None
    for key in ("request", "breadcrumbs", "extra", "user", "contexts", "modules"):
        event.pop(key, None)
    for exception in (event.get("exception") or {}).get("values", []):
        exception["value"] = ""  # the type and frames stay: enough to find the bug
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
            for key in ("pre_context", "context_line", "post_context"):
                frame.pop(key, None)
    entry = event.get("logentry") or {}
    if entry:
        # The format string is ours and quotes nothing; its arguments may.
        event["logentry"] = {"message": str(entry.get("message", ""))}
    event.pop("message", None)
    return event


def start(dsn: str, environment: str, release: str | None = None) -> bool:
    """Initialise the SDK if ``dsn`` is set (settings.sentry_dsn); True if it was."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.excepthook import ExcepthookIntegration
    from sentry_sdk.integrations.logging import (
        LoggingIntegration,
        ignore_logger,
        ignore_logger_for_sentry_logs,
    )
    from sentry_sdk.integrations.threading import ThreadingIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=release,
        environment=environment,
        # Collect nothing of the requests and no variables (the SDK's own switches; scrub() also
        # strips what an integration might still attach).
        data_collection={"user_info": False, "http_bodies": [], "database_query_data": False,
                         "queues": False, "stack_frame_variables": False, "frame_context_lines": 0},
        max_request_body_size="never",
        max_breadcrumbs=0,
        traces_sample_rate=0.0,
        default_integrations=False,  # none that reads requests; errors come through the log
        # Events from errors logged; no breadcrumbs, no Sentry Logs (whose handler matched every
        # record against patterns: 45 µs an access line).
        integrations=[LoggingIntegration(level=None, event_level=logging.WARNING, sentry_logs_level=None),
                      ExcepthookIntegration(), AtexitIntegration(),  # a crashed job; flush at exit
                      # an exception that ends a thread (the writers catch theirs: a bug's last word)
                      ThreadingIntegration(propagate_scope=False)],
        before_send=scrub,
    )
    for ignore in (ignore_logger, ignore_logger_for_sentry_logs):  # one line per request, never an
        ignore(ACCESS_LOG)                                          # error: Sentry does not look
    log.info("unexpected errors are sent to Sentry (sentry_dsn is set), without customer data")
    return True
