"""`make bench`: our model against a plain scikit-learn anchor and a floor, all three served by MLflow.

Ours: our pyfunc (model/) as the image serves it (`chaos serve`: MLflow's scoring app behind the
gateway), indicators read from PostgreSQL. The anchor: the very same trained pipeline saved with
the plain mlflow.sklearn flavour under `mlflow models serve` (predict_proba, no enrichment: the
client sends the indicators). The floor: a pyfunc with our signature answering a constant
(bench/floor_model.py) under `mlflow models serve`: MLflow's own cost, with a model that costs
nothing. Same worker count, same load generator (wrk), the three in turn (the order rotates every
round) for a fixed time per scenario and round. Prints a table and writes bench/results.json.
What the observability costs is bench/overhead.py's.

The machines are shared and noisy: read the ratios of one run, not the absolute times.

Usage: python -m bench.compare [--seconds 5] [--rounds 3] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import requests
from mlflow.models import Model, infer_signature

from chaos_pyfunc.config import Settings
from chaos_pyfunc.contract import schema
from chaos_pyfunc.db import make_engine
from chaos_pyfunc.scoring.socio_eco import IndicatorSource, enrich
from tests.support.database import admin, fresh_database
from tests.support.server import REPO, VENV_BIN, chaos_command, launch

DATA = Path(os.environ.get("CHAOS_DATA_DIR", REPO.parent / "shared" / "data"))
ADMIN_URL = os.environ.get("CHAOS_BENCH_PG_URL", "postgresql+psycopg2://root@127.0.0.1:5432/postgres")
BENCH_DATABASE = "chaos_bench"
WORKERS = "1"
# (name, rows per request, concurrent connections)
SCENARIOS = (("1 row, 1 client", 1, 1), ("1 row, 8 clients", 1, 8), ("1000 rows, 1 client", 1000, 1))
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "non2xx": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# ------------------------------------------------------------------------------------- setup

def statements_run() -> int:
    """Transactions the bench database has seen: with autocommit reads, one per statement."""
    time.sleep(11)  # an idle backend publishes its statistics within 10 s (PGSTAT_IDLE_INTERVAL)
    conn = admin(ADMIN_URL)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                    (BENCH_DATABASE,))
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def enriched_rows(customers: pd.DataFrame, url: str) -> pd.DataFrame:
    """Every customer joined to its indicators by our own code: what the anchor's client sends."""
    engine = make_engine(Settings(database_url=url))
    try:
        return enrich(customers[list(schema.INPUT_COLUMNS)], IndicatorSource(engine, 0), 3)
    finally:
        engine.dispose()


def save_anchor(pipeline: object, enriched: pd.DataFrame, folder: Path) -> Path:
    """The same fitted pipeline as a plain mlflow.sklearn model serving predict_proba."""
    path = folder / "anchor"
    example = enriched.head(3)
    mlflow.sklearn.save_model(
        pipeline, path, pyfunc_predict_fn="predict_proba",
        signature=infer_signature(example, pipeline.predict_proba(example)),
        # MLflow 3 saves sklearn models with skops, which asks to name the non-builtin types.
        skops_trusted_types=["chaos_pyfunc.scoring.pipeline.day_of_month",
                             "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"])
    return path


def save_floor(folder: Path) -> Path:
    """The floor: bench/floor_model.py with the signature of model/."""
    path = folder / "floor"
    mlflow.pyfunc.save_model(path, python_model=str(REPO / "bench" / "floor_model.py"),
                             signature=Model.load(str(REPO / "model")).signature)
    return path


def body(rows: pd.DataFrame) -> str:
    frame = rows.copy()
    if pd.api.types.is_datetime64_any_dtype(frame[schema.DATE]):
        frame[schema.DATE] = frame[schema.DATE].dt.strftime("%Y-%m-%d")
    return json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)})


# ------------------------------------------------------------------------------------ servers

@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    cold_start_s: float

    def rss_mb(self) -> dict[str, float]:
        """Resident memory of the process started and of each uvicorn worker under it (none
        under `chaos serve`, which is the one process)."""
        def rss(pid: int) -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
            return 0.0

        def children(pid: int) -> list[int]:
            found = []
            for task in Path(f"/proc/{pid}/task").iterdir():
                found += [int(p) for p in (task / "children").read_text().split()]
            return found

        workers = children(self.process.pid)
        grandchildren = [g for w in workers for g in children(w)]
        return {"launcher": rss(self.process.pid),
                "workers": [rss(p) for p in (grandchildren or workers)]}


def mlflow_command(model: Path) -> Callable[[int], list[str]]:
    return lambda port: [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager",
                         "local", "-h", "127.0.0.1", "-p", str(port)]


def toggle_command(port: int) -> list[str]:
    """`chaos serve` on model/ whose observability a signal switches (bench/toggle_serve.py)."""
    return [str(VENV_BIN / "python"), "-m", "bench.toggle_serve", "serve", "--model", str(REPO / "model"),
            "--port", str(port)]


@contextmanager
def serve(name: str, command: Callable[[int], list[str]], env: dict[str, str],
          log_dir: Path) -> Iterator[Server]:
    full_env = {**os.environ, **env, "MLFLOW_MODELS_WORKERS": WORKERS,
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    with launch(command, full_env, log_dir, log_dir / f"{name}.log") as served:
        yield Server(name, served.url, served.process, time.perf_counter() - started)


def wrk(server: Server, body_file: Path, connections: int, seconds: float, script: Path) -> dict:
    command = ["wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{round(seconds)}s",
               "--timeout", "10s", "--script", str(script), f"{server.url}/invocations"]
    done = subprocess.run(command, env={**os.environ, "BENCH_BODY": str(body_file)}, capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{server.name}: {result['non2xx']} non-2xx, "
                           f"{result['socket_errors']} socket errors")
    return result


# ---------------------------------------------------------------------------------- in process

def median_ms(call: Callable[[], object], repeat: int) -> float:
    for _ in range(5):
        call()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def in_process(url: str, pipeline: object, customers: pd.DataFrame, enriched: pd.DataFrame) -> dict:
    """Median time of our predict (validation, join, compiled pipeline) against the raw
    predict_proba of the pipeline on already enriched pandas rows; and database reads."""
    os.environ["CHAOS_DATABASE_URL"] = url
    model = mlflow.pyfunc.load_model(str(REPO / "model"))
    scorer = model.unwrap_python_model().scorer
    results = {"compiled": scorer.compiled is not None}
    for size in (1, 1000):
        rows = schema.as_signature_types(customers[list(schema.INPUT_COLUMNS)].iloc[:size])
        ready = enriched.iloc[:size]
        reads = scorer.source.round_trips
        ours = median_ms(lambda rows=rows: scorer.score(rows), 200)
        results[f"{size}_rows"] = {
            "our_predict_ms": ours,
            "raw_predict_proba_ms": median_ms(lambda ready=ready: pipeline.predict_proba(ready), 200),
            "database_reads_in_205_calls": scorer.source.round_trips - reads,
        }
    return results


# --------------------------------------------------------------------------------------- main

def run(seconds: float, rounds: int) -> dict:
    customers = pd.read_csv(DATA / "customers.csv")
    url = fresh_database(ADMIN_URL, BENCH_DATABASE, DATA / "socio_eco.csv")
    enriched = enriched_rows(customers, url)
    with (REPO / "model" / "artifacts" / "pipeline.pkl").open("rb") as handle:
        pipeline = pickle.load(handle)  # noqa: S301 - our own artifact
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-"))
    anchor, floor = save_anchor(pipeline, enriched, work), save_floor(work)
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    sample = customers.sample(1000, random_state=7).index
    bodies = {}
    for size in (1, 1000):
        picked = sample[:size]
        for who, frame in (("ours", customers.loc[picked, list(schema.INPUT_COLUMNS)]),
                           ("floor", customers.loc[picked, list(schema.INPUT_COLUMNS)]),
                           ("anchor", enriched.loc[picked])):
            bodies[who, size] = work / f"{who}-{size}.json"
            bodies[who, size].write_text(body(frame))

    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "seconds_per_run": seconds, "rounds": rounds, "workers": int(WORKERS), "scenarios": {}}
    ours_env = {"CHAOS_DATABASE_URL": url}
    with (serve("ours", chaos_command(), ours_env, work) as ours,
          serve("anchor", mlflow_command(anchor), {}, work) as anchor_server,
          serve("floor", mlflow_command(floor), {}, work) as floor_server):
        servers = (ours, anchor_server, floor_server)
        report["cold_start_s"] = {server.name: server.cold_start_s for server in servers}
        for server in servers:  # each answers
            answer = requests.post(f"{server.url}/invocations", data=bodies[server.name, 1].read_bytes(),
                                   headers={"Content-Type": "application/json"}, timeout=30)
            answer.raise_for_status()
        before, requests_ours = statements_run(), 0
        for name, size, connections in SCENARIOS:
            runs: dict[str, list[dict]] = {server.name: [] for server in servers}
            for round_number in range(rounds):
                turn = round_number % len(servers)
                for server in servers[turn:] + servers[:turn]:
                    result = wrk(server, bodies[server.name, size], connections, seconds, script)
                    runs[server.name].append(result)
                    requests_ours += result["requests"] if server is ours else 0
            report["scenarios"][name] = summarise(runs, size)
            print(f"  {name}: done", flush=True)
        report["rss_mb"] = {server.name: server.rss_mb() for server in servers}
        report["ttl_60"] = {"statements": statements_run() - before, "requests": requests_ours}
    with serve("ours-ttl0", chaos_command(), {**ours_env, "CHAOS_CACHE_TTL_SECONDS": "0"}, work) as ttl0:
        before = statements_run()
        result = wrk(ttl0, bodies["ours", 1], 1, seconds, script)
        report["ttl_0"] = {"statements_per_request": (statements_run() - before) / result["requests"],
                           "p50_ms": result["p50_us"] / 1000}
    report["in_process"] = in_process(url, pipeline, customers, enriched)
    return report


def side_summary(results: list[dict], size: int) -> dict[str, float]:
    """Medians over the rounds of one server."""
    rps = statistics.median(r["requests"] / r["seconds"] for r in results)
    return {"requests_per_s": rps, "rows_per_s": rps * size,
            "p50_ms": statistics.median(r["p50_us"] for r in results) / 1000,
            "p99_ms": statistics.median(r["p99_us"] for r in results) / 1000}


def summarise(runs: dict[str, list[dict]], size: int) -> dict:
    """Medians over the rounds of each side; ours/anchor (ratio) and floor/anchor (floor_ratio)."""
    out: dict = {who: side_summary(results, size) for who, results in runs.items()}
    out["ratio"] = {key: out["ours"][key] / out["anchor"][key] for key in out["ours"]}
    out["floor_ratio"] = {key: out["floor"][key] / out["anchor"][key] for key in out["floor"]}
    return out


def print_table(report: dict) -> None:
    print(f"\n{'scenario':<22}{'side':<12}{'req/s':>9}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, result in report["scenarios"].items():
        for who in ("ours", "anchor", "floor", "ratio", "floor_ratio"):
            r = result[who]
            rows = f"{r['rows_per_s']:>11.2f}" if "ratio" in who else f"{r['rows_per_s']:>11.0f}"
            print(f"{name if who == 'ours' else '':<22}{who:<12}{r['requests_per_s']:>9.2f}"
                  f"{rows}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
    c1 = report["scenarios"]["1 row, 1 client"]["ours"]["requests_per_s"]
    c8 = report["scenarios"]["1 row, 8 clients"]["ours"]["requests_per_s"]
    a1 = report["scenarios"]["1 row, 1 client"]["anchor"]["requests_per_s"]
    a8 = report["scenarios"]["1 row, 8 clients"]["anchor"]["requests_per_s"]
    print(f"\n8 clients / 1 client, requests/s: ours {c8 / c1:.2f}, anchor {a8 / a1:.2f}")
    ttl60, ttl0 = report["ttl_60"], report["ttl_0"]["statements_per_request"]
    print(f"database statements of ours (cache TTL 60 s): {ttl60['statements']} for {ttl60['requests']} "
          f"requests; with the cache off (TTL 0): {ttl0:.2f} per request")
    print("cold start to /ping: " + ", ".join(f"{k} {v:.2f} s" for k, v in report["cold_start_s"].items()))
    print("RSS MB: " + ", ".join(f"{k} {v}" for k, v in report["rss_mb"].items()))
    for size in (1, 1000):
        r = report["in_process"][f"{size}_rows"]
        print(f"in process, {size} row(s): our predict {r['our_predict_ms']:.3f} ms, "
              f"raw predict_proba {r['raw_predict_proba_ms']:.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.json")
    args = parser.parse_args()
    report = run(args.seconds, args.rounds)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
