"""In process, at another git revision against the working tree: our predict (Scorer.score) on 1 and
1000 rows, and the gateway's parse of a 1000-row body (request_body.parse_json_body). Each side runs
in a process of its own with that revision's package and model/, alternated ``--rounds`` times;
medians of each. Indicators from a fresh PostgreSQL database.

Usage: git worktree add /tmp/before <rev>; python -m bench.predict_ab --before /tmp/before [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(model_dir: str) -> dict[str, float]:
    """The figures of the package importable here (the child process's PYTHONPATH)."""
    import mlflow.pyfunc
    import pandas as pd

    from bench.compare import DATA, body, median_ms
    try:
        from chaos_pyfunc.contract import request_body, schema
    except ImportError:  # a revision from before the package's parts were folders
        from chaos_pyfunc import request_body, schema  # type: ignore[attr-defined,no-redef]

    scorer = mlflow.pyfunc.load_model(model_dir).unwrap_python_model().scorer
    customers = pd.read_csv(DATA / "customers.csv")
    sample = customers.sample(1000, random_state=7)[list(schema.INPUT_COLUMNS)].reset_index(drop=True)
    figures = {}
    for size in (1, 1000):
        rows = schema.as_signature_types(sample.iloc[:size])
        figures[f"predict_{size}_ms"] = median_ms(lambda rows=rows: scorer.score(rows), 300)
    encoded = body(sample).encode()
    figures["parse_1000_ms"] = median_ms(lambda: request_body.parse_json_body(encoded), 300)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the other revision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the child: its model directory
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    from bench.compare import ADMIN_URL, DATA
    from tests.support.database import fresh_database

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env["CHAOS_DATABASE_URL"] = fresh_database(ADMIN_URL, "chaos_predict_ab", DATA / "socio_eco.csv")
    env["CHAOS_DATA_DIR"] = str(DATA)  # the same data for both, wherever the other checkout is
    sides = {"before": args.before.resolve(), "now": REPO}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for round_ in range(args.rounds):
        for name in (list(sides) if round_ % 2 == 0 else list(sides)[::-1]):
            code = sides[name]
            done = subprocess.run(
                # By path: the other revision's bench/ may not hold this file.
                [sys.executable, str(Path(__file__).resolve()), "--measure", str(code / "model")],
                env={**env, "PYTHONPATH": f"{code}{os.pathsep}{REPO}"}, cwd=REPO,
                capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for key in runs["now"][0]:
        before = statistics.median(r[key] for r in runs["before"])
        now = statistics.median(r[key] for r in runs["now"])
        print(f"{key:<16} {before:8.3f} -> {now:8.3f} ms  ({before / now:.2f}x faster)")


if __name__ == "__main__":
    main()
