"""`make bench` (its reasons part): what the reason codes cost, measured on the real server.

One `chaos serve` of the committed model (indicators from PostgreSQL), under wrk, one client:
a one-row request with ``params: {"reasons": 3}`` against the same request without, and a
1000-row request with and without, in alternation for a fixed time each, several rounds (the
medians are printed). The goal: one row with reasons at most twice the p50 without. In process,
the cost of the explanation alone (shap's TreeExplainer on the compiled features) for 1 and
1000 rows explains the 1000-row figure. Writes bench/reasons.json.

Usage: python -m bench.reasons [--seconds 10] [--rounds 3] [--out bench/reasons.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from bench.compare import ADMIN_URL, BENCH_DATABASE, DATA, WRK_SCRIPT, Server, wrk
from chaos_pyfunc.contract import schema
from chaos_pyfunc.scoring.compiled import compile_pipeline
from chaos_pyfunc.scoring.reasons import Explainer
from tests.support.database import fresh_database
from tests.support.server import MODEL_DIR, REPO, chaos_command, launch


def body(rows: pd.DataFrame, reasons: int) -> bytes:
    document: dict[str, object] = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    if reasons:
        document["params"] = {"reasons": reasons}
    return json.dumps(document).encode()


def in_process(rows: pd.DataFrame) -> dict[str, float]:
    """The explanation's own cost: TreeSHAP on the compiled features, median ms."""
    from chaos_pyfunc.config import Settings
    from chaos_pyfunc.db import make_engine
    from chaos_pyfunc.scoring.socio_eco import IndicatorSource

    pipeline = pickle.loads((MODEL_DIR / "artifacts" / "pipeline.pkl").read_bytes())  # noqa: S301
    compiled = compile_pipeline(pipeline)
    if compiled is None:
        raise RuntimeError("the committed model does not compile")
    explainer = Explainer(compiled)
    settings = Settings(database_url=fresh_database(ADMIN_URL, BENCH_DATABASE))
    table = IndicatorSource(make_engine(settings), ttl_seconds=3600).table()
    found = {}
    for n in (1, 1000):
        batch = schema.fast_batch(schema.as_signature_types(rows.head(n)))
        indicators = None if batch is None else table.rows_for(batch.months, 3)
        if batch is None or indicators is None:
            raise RuntimeError("the benchmark's rows must be valid, with indicators")
        features = compiled.features(batch, indicators)
        times = []
        for _ in range(30 if n == 1000 else 300):
            started = time.perf_counter()
            explainer.explain(features)
            times.append((time.perf_counter() - started) * 1e3)
        found[f"explain_{n}_rows_ms"] = round(statistics.median(times), 3)
    return found


def run(seconds: float, rounds: int) -> dict[str, object]:
    customers = pd.read_csv(DATA / "customers.csv")
    rows = customers.sample(n=1000, random_state=0)[list(schema.INPUT_COLUMNS)]
    url = fresh_database(ADMIN_URL, BENCH_DATABASE)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        script = work / "wrk.lua"
        script.write_text(WRK_SCRIPT)
        files = {}
        for n in (1, 1000):
            for reasons in (0, 3):
                files[(n, reasons)] = work / f"{n}-{reasons}.json"
                files[(n, reasons)].write_bytes(body(rows.head(n), reasons))
        env = {"CHAOS_DATABASE_URL": url, "PATH": str(Path(REPO / ".venv" / "bin")) + ":/usr/bin:/bin"}
        with launch(chaos_command(), env, work, work / "server.log", 120) as served:
            server = Server("ours", served.url, served.process, 0.0)
            for path in files.values():  # a warm-up each: shap loads with the first
                wrk(server, path, 1, 2, script)
            for _ in range(rounds):
                for (n, reasons), path in files.items():
                    results.setdefault(f"{n}_{reasons}", []).append(wrk(server, path, 1, seconds, script))
                    # wrk stops waiting, not the server: the last 1000-row request with reasons (0.7 s
                    # of TreeSHAP) would still run into the next case's first requests.
                    time.sleep(1.0)

    def median(key: str, field: str) -> float:
        return statistics.median(r[field] for r in results[key])

    figures = {}
    for n in (1, 1000):
        for reasons in (0, 3):
            key = f"{n}_{reasons}"
            rps = statistics.median(r["requests"] / r["seconds"] for r in results[key])
            figures[key] = {"p50_ms": median(key, "p50_us") / 1000, "p99_ms": median(key, "p99_us") / 1000,
                            "requests_per_s": round(rps, 1), "rows_per_s": round(rps * n, 1)}
    one_row = figures["1_3"]["p50_ms"] / figures["1_0"]["p50_ms"]
    thousand = figures["1000_3"]["rows_per_s"] / figures["1000_0"]["rows_per_s"]
    return {"seconds_per_run": seconds, "rounds": rounds, "figures": figures,
            "one_row_p50_ratio": round(one_row, 3), "thousand_rows_per_s_ratio": round(thousand, 3),
            "in_process": in_process(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "reasons.json")
    args = parser.parse_args()
    result = run(args.seconds, args.rounds)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    f = result["figures"]
    print(f"1 row: p50 {f['1_0']['p50_ms']:.2f} ms without reasons, {f['1_3']['p50_ms']:.2f} ms with 3 "
          f"(x{result['one_row_p50_ratio']:.2f}); 1000 rows: {f['1000_0']['rows_per_s']:,.0f} rows/s "
          f"without, {f['1000_3']['rows_per_s']:,.0f} with (x{result['thousand_rows_per_s_ratio']:.2f}); "
          f"in process, the explanation alone: {result['in_process']}")


if __name__ == "__main__":
    main()
