"""`make soak`: the real server under a steady rate for 10 minutes.

`chaos soak` reads socio_eco from PostgreSQL (a fresh ``chaos_soak`` database on the server at
CHAOS_BENCH_PG_URL) with the default settings; the load is open loop (load.py), the
serving example's 3 rows per request. Prints sent, 2xx/4xx/5xx, timeouts, latency percentiles,
and the server's resident memory after a warm-up and at the end: the targets are 0 errors,
p99 < 100 ms and less than 10% memory growth.

Usage: python -m bench.soak [--seconds 600] [--rate 50] [--warmup 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from chaos_pyfunc.config import Settings

from .database import fresh_database
from .load import SteadyLoad, format_summary, rss_bytes
from .server import REPO, chaos_server

ADMIN_URL = os.environ.get("CHAOS_BENCH_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/postgres")
DATABASE = "chaos_soak"
BODY = (REPO / "model" / "serving_input_example.json").read_bytes()
ROWS_PER_REQUEST = len(json.loads(BODY)["dataframe_split"]["data"])
SAMPLE_SECONDS = 5.0


def run(seconds: float, rate: float, warmup: float, workdir: Path, total: int | None = None
        ) -> dict[str, object]:
    """``seconds`` of load at ``rate``; with ``total``, until that many requests are answered
    instead (however long a slow machine takes, up to 10 times the expected time)."""
    url = fresh_database(ADMIN_URL, DATABASE)
    # The prediction log on, as in the pods: every row scored must be in it, or counted as dropped.
    with chaos_server({"CHAOS_DATABASE_URL": url, "CHAOS_PREDICTION_LOG": "true"}, workdir) as served:
        load = SteadyLoad(f"{served.url}/invocations", BODY, rate, Settings().request_timeout_seconds,
                          total=total)
        samples: list[tuple[float, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                samples.append((load.elapsed(), rss_bytes(served.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        load.start()
        sampler.start()
        if total is None:
            done.wait(seconds)
        else:
            load.wait(10 * total / rate + 60)
        done.set()
        report = load.stop()
        sampler.join()
        samples.append((load.elapsed(), rss_bytes(served.pid)))  # the end, exactly
        metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    # The server has exited (SIGTERM): what its prediction log held is written by now.
    dropped = sum(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("chaos_prediction_log_dropped_rows_total"))
    engine = create_engine(url)
    with engine.connect() as conn:
        logged = conn.execute(text("SELECT count(*) FROM prediction_rows")).scalar_one()
    engine.dispose()
    after_warmup = next((rss for t, rss in samples if t >= warmup), samples[0][1])
    end = samples[-1][1]
    return {
        "seconds": round(samples[-1][0], 1), "rate_per_s": rate, **report.summary(),
        "rss_after_warmup_mb": round(after_warmup / 2**20, 1), "rss_end_mb": round(end / 2**20, 1),
        "rss_max_mb": round(max(r for _, r in samples) / 2**20, 1),
        "rss_growth_pct": round(100 * (end - after_warmup) / after_warmup, 2),
        "scored_rows": report.count(200, 300) * ROWS_PER_REQUEST, "logged_rows": logged,
        "dropped_rows": int(dropped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        result = run(args.seconds, args.rate, args.warmup, Path(scratch))
    print(format_summary(f"soak {args.seconds:g} s at {args.rate:g}/s", result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
