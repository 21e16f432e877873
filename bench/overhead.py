"""`make bench`, second part: what the observability costs the requests.

`chaos serve` as the pods run it (metrics on their own port, the JSON access line, the
prediction log on, a Sentry DSN set, one predict thread), whose observability a signal switches
off and on (bench/toggle_serve.py). One client sends the same body again and again on one
keep-alive connection, and the state flips every ``segment`` requests (about 0.3 s): both states
see the same machine, whose speed drifts by more than the cost within seconds. Per state: the
p50 and p99 of the requests' latencies, the rows per second of the client's loop, the CPU time
of the server and its COPY process per request (PostgreSQL's is not counted). The change is on
against off. One server's figures differ from the next one's (by ±5% here) more than within
it, so ``--rounds`` servers run one after the other and the change reported is the median of
theirs. The metrics show that the off state counted nothing, and the prediction log that every
row scored while on was written.

Usage: python -m bench.overhead [--seconds 30] [--rounds 3] [--out bench/overhead.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import requests

from bench.compare import ADMIN_URL, BENCH_DATABASE, DATA, body, serve, toggle_command
from chaos_pyfunc.contract import schema
from tests.support.database import fresh_database
from tests.support.server import REPO, free_port

# (name, rows per request, requests per segment: about 0.3 s)
SCENARIOS = (("1 row, 1 client", 1, 50), ("1000 rows, 1 client", 1000, 15))
WARMUP = 2  # the first requests after a switch are left out of the latencies
WARMUP_SECONDS = 8.0  # per scenario and server, both states, left out: the first seconds ran up to 20% apart
STATES = ("on", "off")


def cpu_seconds(pid: int) -> float:
    """CPU seconds spent so far by a process and its children (/proc)."""
    def own(process: int) -> float:
        fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()]
    return own(pid) + sum(own(child) for child in children)


def observed(metrics_port: int, settle: bool = False) -> dict[str, float]:
    """Requests to /invocations counted, rows scored (the appetence histogram), rows written
    and dropped by the prediction log; with ``settle``, once the log has written what was scored."""
    def values() -> dict[str, float]:
        found = dict.fromkeys(("requests", "scored", "written", "dropped"), 0.0)
        names = {"chaos_appetence_count": "scored", "chaos_prediction_log_written_rows_total": "written",
                 "chaos_prediction_log_dropped_rows_total": "dropped"}
        for line in requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text.splitlines():
            if line.startswith('chaos_requests_total{endpoint="/invocations"'):
                found["requests"] += float(line.split()[-1])
            elif line.split(" ")[0] in names:
                found[names[line.split(" ")[0]]] = float(line.split()[-1])
        return found

    found = values()
    for _ in range(120 if settle else 0):
        if found["written"] + found["dropped"] >= found["scored"]:
            break
        time.sleep(0.5)
        found = values()
    return found


def switch(pid: int, state: str, state_file: Path) -> None:
    """Switch the server's observability (bench/toggle_serve.py), and wait until it says it did."""
    os.kill(pid, signal.SIGUSR2 if state == "on" else signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not (state_file.is_file() and state_file.read_text() == state):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not switch {state}")
        time.sleep(0.002)


def interleaved(url: str, pid: int, state_file: Path, payload: bytes, segment: int,
                seconds: float) -> dict[str, list]:
    """Requests one after the other, the state flipped every ``segment`` requests; per state,
    each segment's latencies (s), requests and CPU seconds."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    segments: dict[str, list] = {state: [] for state in STATES}
    deadline, flips = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        state = STATES[flips % 2]
        flips += 1
        switch(pid, state, state_file)
        latencies, cpu = [], cpu_seconds(pid)
        for _ in range(segment):
            started = time.perf_counter()
            connection.request("POST", "/invocations", payload, headers)
            answer = connection.getresponse()
            answer.read()
            latencies.append(time.perf_counter() - started)
            if answer.status != 200:
                raise RuntimeError(f"the server answered {answer.status}")
        segments[state].append((latencies[WARMUP:], segment, cpu_seconds(pid) - cpu))
    connection.close()
    return segments


def summary(segments: list, size: int) -> dict[str, float]:
    latencies = [latency for part, _, _ in segments for latency in part]
    sent = sum(n for _, n, _ in segments)
    return {"requests": float(sent), "p50_ms": 1e3 * statistics.median(latencies),
            "p99_ms": 1e3 * statistics.quantiles(latencies, n=100)[98],
            "rows_per_s": size / statistics.fmean(latencies),
            "server_cpu_ms_per_request": 1e3 * sum(c for _, _, c in segments) / sent}


def change(on: dict[str, float], off: dict[str, float]) -> dict[str, float]:
    return {key: 100 * (on[key] / off[key] - 1) for key in on if key != "requests"}


def one_server(url: str, payloads: dict[int, bytes], work: Path, seconds: float) -> dict:
    """A server of its own: per scenario, its segments in each state; what its metrics counted."""
    metrics_port = free_port()
    state_file = work / "state"
    env = {"CHAOS_DATABASE_URL": url, "CHAOS_PREDICTION_LOG": "true",
           "CHAOS_METRICS_PORT": str(metrics_port),
           "CHAOS_PREDICT_THREADS": "1",  # as in the pods (k8s/base/deployment.yaml: one CPU each)
           # Nothing is sent unless an error is logged; none is, or the bench fails.
           "CHAOS_SENTRY_DSN": f"http://bench@127.0.0.1:{free_port()}/1", "PYTHONPATH": str(REPO),
           "BENCH_STATE_FILE": str(state_file)}
    sent_on, scenarios = 0, {}
    with serve("pods", toggle_command, env, work) as server:
        for name, size, segment in SCENARIOS:
            for spell in (WARMUP_SECONDS, seconds):  # the segments kept are the second spell's
                segments = interleaved(server.url, server.process.pid, state_file, payloads[size], segment,
                                       spell)
                sent_on += sum(n for _, n, _ in segments["on"])
            scenarios[name] = segments
        switch(server.process.pid, "on", state_file)
        found = observed(metrics_port, settle=True)
    if found["requests"] != sent_on:
        raise RuntimeError(f"the observability was not switched as meant: {found['requests']} requests "
                           f"counted, {sent_on} sent while on")
    return {"scenarios": scenarios, "requests_counted": {"on": found["requests"], "sent_on": sent_on},
            # Every row scored while on is logged or counted as dropped.
            "prediction_log": {key: found[key] for key in ("scored", "written", "dropped")}}


def measure(url: str, payloads: dict[int, bytes], seconds: float, rounds: int) -> dict:
    """``rounds`` servers one after the other: a server's figures differ from the next one's by
    more than within it (where its threads and the client land), so the change reported is the
    median of the rounds'."""
    runs = []
    for round_ in range(rounds):
        runs.append(one_server(url, payloads, Path(tempfile.mkdtemp(prefix="chaos-overhead-")), seconds))
        print(f"  round {round_ + 1} of {rounds}: done", flush=True)
    report: dict = {"seconds_per_scenario": seconds, "warmup_seconds": WARMUP_SECONDS, "rounds": rounds,
                    "scenarios": {}}
    for name, size, _ in SCENARIOS:
        pooled = {state: summary([s for run in runs for s in run["scenarios"][name][state]], size)
                  for state in STATES}
        by_round = [change(summary(run["scenarios"][name]["on"], size),
                           summary(run["scenarios"][name]["off"], size)) for run in runs]
        report["scenarios"][name] = {**pooled, "change_pct": {key: statistics.median(r[key] for r in by_round)
                                                              for key in by_round[0]},
                                     "change_pct_by_round": by_round}
    for part in ("requests_counted", "prediction_log"):
        report[part] = {key: sum(run[part][key] for run in runs) for key in runs[0][part]}
    return report


def print_report(report: dict) -> None:
    print(f"observability as in the pods, on against off, flipped every 0.3 s in each of {report['rounds']} "
          f"servers ({report['seconds_per_scenario']:g} s per scenario each); the median of the servers:")
    for name, result in report["scenarios"].items():
        on, off, diff = result["on"], result["off"], result["change_pct"]
        rounds = ", ".join(f"{r['p50_ms']:+.1f}%/{r['rows_per_s']:+.1f}%"
                           for r in result["change_pct_by_round"])
        print(f"  {name}: p50 {off['p50_ms']:.2f} -> {on['p50_ms']:.2f} ms ({diff['p50_ms']:+.1f}%), "
              f"rows/s {off['rows_per_s']:,.0f} -> {on['rows_per_s']:,.0f} ({diff['rows_per_s']:+.1f}%), "
              f"p99 {diff['p99_ms']:+.1f}%, server CPU per request "
              f"{diff['server_cpu_ms_per_request']:+.1f}%; by server (p50/rows/s): {rounds}")
    log, counted = report["prediction_log"], report["requests_counted"]
    print(f"  requests counted {counted['on']:,.0f} for {counted['sent_on']:,.0f} sent while on; prediction "
          f"log {log['written']:,.0f} rows written, {log['dropped']:,.0f} dropped, "
          f"for {log['scored']:,.0f} scored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario and server")
    parser.add_argument("--rounds", type=int, default=3, help="servers, one after the other")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "overhead.json")
    args = parser.parse_args()
    customers = pd.read_csv(DATA / "customers.csv")
    sample = customers.sample(1000, random_state=7)[list(schema.INPUT_COLUMNS)]
    payloads = {size: body(sample.head(size)).encode() for size in (1, 1000)}
    url = fresh_database(ADMIN_URL, BENCH_DATABASE, DATA / "socio_eco.csv")
    report = measure(url, payloads, args.seconds, args.rounds)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
