"""A/B of `chaos serve` at another git revision against the working tree, in one run: the same
venv, model and database, alternated under wrk (the order flips every round), 1 row and 1000 rows
per request. What a change costs, measured without the machine's drift between two runs.

Usage: git worktree add /tmp/before <rev>; python -m bench.ab --before /tmp/before [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import pandas as pd

from bench.compare import ADMIN_URL, DATA, WRK_SCRIPT, Server, body, wrk
from chaos_pyfunc.contract import schema
from tests.support.database import fresh_database
from tests.support.server import REPO, VENV_BIN, launch

SIZES = (1, 1000)


def serve_from(code: Path) -> tuple[list[str], dict[str, str]]:
    """The command and PYTHONPATH that run `chaos serve` from the package in ``code``."""
    return [str(VENV_BIN / "python"), "-m", "chaos_pyfunc.cli", "serve", "--model", str(REPO / "model")], \
        {"PYTHONPATH": str(code)}


def run(before: Path, rounds: int, seconds: float) -> dict[int, dict[str, float]]:
    customers = pd.read_csv(DATA / "customers.csv")
    url = fresh_database(ADMIN_URL, "chaos_ab", DATA / "socio_eco.csv")
    work = Path(tempfile.mkdtemp(prefix="chaos-ab-"))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    sample = customers.sample(1000, random_state=7).index
    bodies = {}
    for size in SIZES:
        bodies[size] = work / f"{size}.json"
        bodies[size].write_text(body(customers.loc[sample[:size], list(schema.INPUT_COLUMNS)]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAOS_")}
    env.update({"CHAOS_DATABASE_URL": url, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
    results: dict[tuple[str, int], list[dict]] = {(who, size): [] for who in ("before", "now")
                                                  for size in SIZES}
    (old_command, old_path), (new_command, new_path) = serve_from(before), serve_from(REPO)
    with launch(lambda port: [*old_command, "--port", str(port)], {**env, **old_path}, work,
                work / "before.log") as old, \
            launch(lambda port: [*new_command, "--port", str(port)], {**env, **new_path}, work,
                   work / "now.log") as new:
        servers = [("before", Server("before", old.url, old.process, 0.0)),
                   ("now", Server("now", new.url, new.process, 0.0))]
        for round_ in range(rounds):
            for size in SIZES:
                for who, server in servers if round_ % 2 == 0 else servers[::-1]:
                    results[who, size].append(wrk(server, bodies[size], 1, seconds, script))
    report = {}
    for size in SIZES:
        figures = {}
        for who in ("before", "now"):
            runs = results[who, size]
            rates = [r["requests"] / r["seconds"] for r in runs]
            figures[f"{who}_rows_per_s"] = statistics.median(rates) * size
            figures[f"{who}_p50_ms"] = statistics.median(r["p50_us"] for r in runs) / 1000
        report[size] = figures
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the other revision")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    for size, f in run(args.before, args.rounds, args.seconds).items():
        print(f"{size:>4} row(s): rows/s {f['before_rows_per_s']:.0f} -> {f['now_rows_per_s']:.0f} "
              f"({100 * (f['now_rows_per_s'] / f['before_rows_per_s'] - 1):+.1f}%), "
              f"p50 {f['before_p50_ms']:.2f} -> {f['now_p50_ms']:.2f} ms "
              f"({100 * (f['now_p50_ms'] / f['before_p50_ms'] - 1):+.1f}%)")


if __name__ == "__main__":
    main()
