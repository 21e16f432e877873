"""`make profile`: where a 1000-row request's time goes in `chaos serve`, sampled by py-spy under wrk.

The server runs model/ on PostgreSQL; wrk sends the same 1000-row dataframe_split body on one
connection while py-spy samples the server's Python threads (idle ones left out; the compiled
trees' own threads are native, unseen: their time shows as the calling thread waiting, idle).
Each sample is charged to a part (PARTS, by priority), given in milliseconds of a thread's time
per request: samples / rate / requests. Writes bench/breakdown.json.

Usage: python -m bench.breakdown [--seconds 20] [--out bench/breakdown.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from bench.compare import ADMIN_URL, DATA, WRK_SCRIPT, body
from chaos_pyfunc.contract import schema
from tests.support.database import fresh_database
from tests.support.server import VENV_BIN, chaos_server

RATE = 250  # samples per second
# (part, a marker of its frames), by priority: a sample is charged to the first part whose marker
# is in any of its frames. The entry points do not nest in one another, except ours (inside
# MLflow's predict) and everything (inside the gateway), which the order settles.
PARTS = (
    ("ours: predict (validation, join, compiled trees)", "AppetenceModel.predict"),
    ("MLflow: check and cast to the signature", "_enforce_schema"),
    ("MLflow: parse the JSON into a DataFrame", "_parse_json_data"),
    ("MLflow: encode the answer", "predictions_to_json"),
    ("gateway: parse and check the body", "chaos_pyfunc/contract/request_body.py"),
    ("MLflow: the rest of its app", "mlflow/"),
    ("gateway: the rest (limits, log, metrics, answer)", "chaos_pyfunc/http/gateway.py"),
    ("gateway: the rest (limits, log, metrics, answer)", "chaos_pyfunc/http/edge.py"),
)
OTHER = "server: uvicorn, starlette, asyncio, the rest"


def part_of(stack: str) -> str:
    """The part a collapsed stack (frames separated by ';') is charged to."""
    for part, marker in PARTS:
        if marker in stack:
            return part
    return OTHER


def run(seconds: int) -> dict:
    customers = pd.read_csv(DATA / "customers.csv")
    url = fresh_database(ADMIN_URL, "chaos_profile", DATA / "socio_eco.csv")
    work = Path(tempfile.mkdtemp(prefix="chaos-profile-"))
    (work / "post.lua").write_text(WRK_SCRIPT)
    (work / "1000.json").write_text(body(customers.sample(1000, random_state=7)[list(schema.INPUT_COLUMNS)]))
    samples = work / "samples.txt"
    with chaos_server({"CHAOS_DATABASE_URL": url}, work) as served:
        load = subprocess.Popen(
            ["wrk", "--threads", "1", "--connections", "1", "--duration", f"{seconds + 4}s",
             "--timeout", "10s", "--script", str(work / "post.lua"), f"{served.url}/invocations"],
            env={**os.environ, "BENCH_BODY": str(work / "1000.json")}, stdout=subprocess.PIPE, text=True)
        subprocess.run([str(VENV_BIN / "py-spy"), "record", "--pid", str(served.pid), "--rate", str(RATE),
                        "--duration", str(seconds), "--format", "raw", "--output", str(samples),
                        "--nonblocking"],  # sampled without pausing the server: no added latency
                       check=True, capture_output=True)
        out, _ = load.communicate(timeout=seconds + 60)
    result = json.loads(out.strip().splitlines()[-1])
    requests_per_s = result["requests"] / result["seconds"]
    counts: Counter[str] = Counter()
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        counts[part_of(stack)] += int(count)
    sampled_requests = requests_per_s * seconds
    names = dict.fromkeys([*(part for part, _ in PARTS), OTHER])  # in order, once each
    parts = {part: counts[part] / RATE / sampled_requests * 1000 for part in names}
    return {"rows_per_request": 1000, "seconds": seconds, "rate_hz": RATE,
            "requests_per_s": requests_per_s, "p50_ms": result["p50_us"] / 1000,
            "ms_per_request": {k: round(v, 2) for k, v in parts.items()},
            "busy_ms_per_request": round(sum(parts.values()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "breakdown.json")
    args = parser.parse_args()
    report = run(args.seconds)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"1000 rows per request, {report['requests_per_s']:.1f} requests/s, p50 {report['p50_ms']:.1f} ms; "
          f"busy {report['busy_ms_per_request']:.1f} ms per request:")
    for part, ms in report["ms_per_request"].items():
        print(f"  {ms:6.2f} ms  {part}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
