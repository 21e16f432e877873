"""End-to-end latency of /invocations: median of N requests of 1 row and of 1000 rows.

Usage: python bench/latency.py [--url http://127.0.0.1:5000] [--repeat 100]
The server must be running (for example `make serve` with CHAOS_DATABASE_URL set).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import requests

from chaos_pyfunc.schema import INPUT_COLUMNS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "customers.csv"


def body(rows: pd.DataFrame) -> str:
    return json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)})


def measure(session: requests.Session, url: str, payload: str, repeat: int) -> list[float]:
    headers = {"Content-Type": "application/json"}
    for _ in range(5):  # warm up: connection, caches
        session.post(url, data=payload, headers=headers, timeout=60).raise_for_status()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        session.post(url, data=payload, headers=headers, timeout=60).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--customers", type=Path, default=DATA)
    args = parser.parse_args()
    customers = pd.read_csv(args.customers)[list(INPUT_COLUMNS)]
    with requests.Session() as session:
        for size in (1, 1000):
            timings = measure(session, f"{args.url}/invocations",
                              body(customers.sample(size, random_state=0)), args.repeat)
            print(f"{size:>5} row(s): median {statistics.median(timings):7.1f} ms  "
                  f"p90 {statistics.quantiles(timings, n=10)[-1]:7.1f} ms  (n={len(timings)})")


if __name__ == "__main__":
    main()
