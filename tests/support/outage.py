"""Database outage under load: steady traffic while PostgreSQL stops, stays down, starts again.

Two servers read socio_eco from the same private PostgreSQL (pg_cluster.py), with the
cache expiring every second so they really go to the database during the outage:

- "stale": the default staleness bound (1 h): the last good indicators are served meanwhile;
- "strict": staleness 0: a quick 503 as soon as the cache has expired.

For each: sent, 2xx, 4xx, 5xx, timeouts (no answer within the request timeout), connection
errors, latencies, and the recovery time: from PostgreSQL accepting connections again to the
first request from which every answer is a 2xx. Neither server is restarted.

Usage: python -m bench.outage [--down 10] [--before 3] [--after 8] [--rate 20] [--out FILE]
(`make outage`: a 60 s outage). tests/e2e/test_outage.py runs it with a 10 s outage.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from chaos_pyfunc.config import Settings

from .database import fresh_database
from .load import Report, SteadyLoad, format_summary
from .pg_cluster import PgCluster
from .server import REPO, chaos_server, free_port

BODY = (REPO / "model" / "serving_input_example.json").read_bytes()
MODES = {"stale": "3600", "strict": "0"}


def recovery_seconds(report: Report, up_at: float) -> float | None:
    """From ``up_at`` (seconds into the run) to the first request after which all are 2xx."""
    after = [o for o in report.outcomes if o.due >= up_at]
    for i, outcome in enumerate(after):
        if all(o.status is not None and o.status < 300 for o in after[i:]):
            return max(0.0, outcome.due - up_at)
    return None


def run(down: float, before: float, after: float, rate: float, workdir: Path,
        seen_while_down: int = 0) -> dict[str, object]:
    """``down`` seconds of outage, and longer if need be until each server has answered
    ``seen_while_down`` requests due during it, however slow the machine; a server that answers
    none for 10 times the expected time is an error (RuntimeError), not a figure."""
    cluster = PgCluster(free_port()).init()
    try:
        cluster.start()
        url = fresh_database(cluster.url, "chaos")
        timeout = Settings().request_timeout_seconds
        with ExitStack() as stack:
            servers = {}
            for mode, staleness in MODES.items():
                (workdir / mode).mkdir(parents=True, exist_ok=True)
                servers[mode] = stack.enter_context(chaos_server(
                    {"CHAOS_DATABASE_URL": url, "CHAOS_CACHE_TTL_SECONDS": "1",
                     "CHAOS_INDICATORS_MAX_STALENESS_SECONDS": staleness,
                     # as in the pods: its writes fail during the outage, off the request path
                     "CHAOS_PREDICTION_LOG": "true"}, workdir / mode))
            loads = {mode: SteadyLoad(f"{served.url}/invocations", BODY, rate, timeout)
                     for mode, served in servers.items()}
            for load in loads.values():
                load.start()
            time.sleep(before)
            down_at = cluster.stop() - loads["strict"].started
            time.sleep(down)
            limit = 10 * max(down, seen_while_down / rate)
            deadline = time.monotonic() + limit
            while any(load.answered_since(down_at) < seen_while_down for load in loads.values()):
                if time.monotonic() > deadline:  # not slowness: a server that stopped answering
                    raise RuntimeError(f"a server answered fewer than {seen_while_down} requests "
                                       f"due during the outage within {limit:.0f} s")
                time.sleep(0.1)
            up_at = cluster.start() - loads["strict"].started
            time.sleep(after)
            reports = {mode: load.stop() for mode, load in loads.items()}
    finally:
        cluster.destroy()
    result: dict[str, object] = {"down_at_s": round(down_at, 2), "up_at_s": round(up_at, 2),
                                 "rate_per_s": rate,
                                 "logs": {mode: str(workdir / mode / "server.log") for mode in MODES}}
    for mode, report in reports.items():
        recovery = recovery_seconds(report, up_at)
        result[mode] = {**report.summary(),
                        "while_down": report.between(down_at, up_at).summary(),
                        "recovery_s": None if recovery is None else round(recovery, 2)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down", type=float, default=60.0)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = run(args.down, args.before, args.after, args.rate, Path(scratch))
    print(f"PostgreSQL down from {result['down_at_s']} s to {result['up_at_s']} s, "
          f"{args.rate:g} requests/s per server")
    for mode in MODES:
        print(format_summary(mode, result[mode]))  # type: ignore[arg-type]
    if args.out:
        result.pop("logs")  # scratch paths, gone by now
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
