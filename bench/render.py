"""`make docs`: the figures of docs/ rendered from the JSON the benchmarks write, so they cannot
drift from the runs, and the tables the code can state from the code: the settings
(chaos_pyfunc/config.py), the exit codes and commands (cli.py), the input columns (schema.py)
and the modules (the first sentence of each one's docstring). Each block sits between
``<!-- rendered: NAME -->`` and ``<!-- end -->`` in a document; the text around the blocks is
written by hand. ``--check`` changes nothing and exits 1 when a block is not what its source
gives (a test runs it).

Usage: python -m bench.render [--check]
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.h11_impl import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE

from chaos_pyfunc.cli import EXIT_CODES, build_parser
from chaos_pyfunc.config import Settings, settings_table
from chaos_pyfunc.contract import schema

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DOCS = REPO / "docs"
PACKAGE = REPO / "chaos_pyfunc"


def _load(name: str) -> dict:
    return json.loads((BENCH / name).read_text())


def bench_table() -> str:
    report = _load("results.json")
    lines = ["| scenario | side | req/s | rows/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for name, result in report["scenarios"].items():
        for who in ("ours", "anchor", "floor"):
            r = result[who]
            lines.append(f"| {name if who == 'ours' else ''} | {who} | {r['requests_per_s']:.1f} | "
                         f"{r['rows_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
        ratio, floor = result["ratio"], result["floor_ratio"]
        lines.append(f"| | ours / anchor | {ratio['requests_per_s']:.2f} | {ratio['rows_per_s']:.2f} | "
                     f"**{ratio['p50_ms']:.2f}** | {ratio['p99_ms']:.2f} |")
        lines.append(f"| | floor / anchor | {floor['requests_per_s']:.2f} | {floor['rows_per_s']:.2f} | "
                     f"{floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} |")
    process, cold, rss = report["in_process"], report["cold_start_s"], report["rss_mb"]
    memory = ", ".join(f"{who} {sum([r['launcher'], *r['workers']]):.0f} MB" for who, r in rss.items())
    lines += [
        "",
        f"- {report['machine']['cpus']} cores, Python {report['machine']['python']}; "
        f"{report['rounds']} rounds of {report['seconds_per_run']} s per scenario and server, "
        "the order rotating every round.",
        f"- In process, median of 200: our predict {process['1_rows']['our_predict_ms']:.2f} ms for 1 row "
        f"and {process['1000_rows']['our_predict_ms']:.2f} ms for 1000; the pipeline's own predict_proba on "
        f"enriched pandas rows {process['1_rows']['raw_predict_proba_ms']:.2f} and "
        f"{process['1000_rows']['raw_predict_proba_ms']:.2f} ms.",
        "- Cold start to /ping: " + ", ".join(f"{who} {s:.1f} s" for who, s in cold.items())
        + f". Memory (all processes): {memory}.",
        f"- Database statements of ours, cache TTL 60 s: {report['ttl_60']['statements']} for "
        f"{report['ttl_60']['requests']:,} requests; cache off: "
        f"{report['ttl_0']['statements_per_request']:.2f} per request.",
    ]
    return "\n".join(lines)


def breakdown_table() -> str:
    report = _load("breakdown.json")
    lines = [f"1000 rows per request, one connection: {report['requests_per_s']:.1f} requests/s, p50 "
             f"{report['p50_ms']:.1f} ms; sampled at {report['rate_hz']} Hz for {report['seconds']} s.", "",
             "| part | ms of a thread per request |", "|---|---|"]
    lines += [f"| {part} | {ms:.2f} |" for part, ms in report["ms_per_request"].items()]
    lines.append(f"| **all** | **{report['busy_ms_per_request']:.2f}** |")
    return "\n".join(lines)


def outage_table() -> str:
    report = _load("outage.json")
    lines = [f"PostgreSQL down {report['up_at_s'] - report['down_at_s']:.0f} s under "
             f"{report['rate_per_s']:.0f} requests/s on each server:", "",
             "| server | sent | 2xx | 503 | timeouts, connection errors | recovery after PostgreSQL is back "
             "|",
             "|---|---|---|---|---|---|"]
    for name, label in (("stale", "staleness bound 1 h (the default)"), ("strict", "staleness 0")):
        r = report[name]
        lines.append(f"| {label} | {r['sent']:,} | {r['2xx']:,} | {r['statuses'].get('503', 0):,} | "
                     f"{r['timeouts'] + r['connection_errors']} | {r['recovery_s']:.1f} s |")
    return "\n".join(lines)


def soak_line() -> str:
    r = _load("soak.json")
    return (f"{r['seconds'] / 60:.0f} minutes at {r['rate_per_s']:.0f} requests/s: {r['sent']:,} sent, "
            f"{r['2xx']:,} answered 2xx, {r['sent'] - r['2xx']} otherwise; p50 {r['p50_ms']:.1f} ms, p99 "
            f"{r['p99_ms']:.1f} ms, max {r['max_ms']:.0f} ms; the server's memory "
            f"{r['rss_after_warmup_mb']:.1f} MB after the warm-up, {r['rss_end_mb']:.1f} MB at the end "
            f"({r['rss_growth_pct']:+.1f}%)." + (
                f" The prediction log (on, as in the pods): {r['logged_rows']:,} rows for "
                f"{r['scored_rows']:,} scored, {r['dropped_rows']:,} dropped." if "logged_rows" in r else ""))


def overhead_table() -> str:
    cost = _load("overhead.json")
    lines = ["| scenario | p50 off → on | p50 | rows/s off → on | rows/s | p99 | the server's CPU "
             "per request | p50 and rows/s, by server |", "|---|---|---|---|---|---|---|---|"]
    for name, result in cost["scenarios"].items():
        off, on, change = result["off"], result["on"], result["change_pct"]
        by_server = ", ".join(f"{r['p50_ms']:+.1f}% {r['rows_per_s']:+.1f}%"
                              for r in result["change_pct_by_round"])
        lines.append(f"| {name} | {off['p50_ms']:.2f} → {on['p50_ms']:.2f} ms | **{change['p50_ms']:+.1f}%** "
                     f"| {off['rows_per_s']:,.0f} → {on['rows_per_s']:,.0f} "
                     f"| **{change['rows_per_s']:+.1f}%** | {change['p99_ms']:+.1f}% "
                     f"| {change['server_cpu_ms_per_request']:+.1f}% | {by_server} |")
    log, counted = cost["prediction_log"], cost["requests_counted"]
    lines += ["", f"- {cost['rounds']} servers one after the other, each {cost['seconds_per_scenario']:g} s "
              f"per scenario after {cost['warmup_seconds']:g} s of warm-up, the state flipped every 0.3 s; "
              "the percentages in bold are the median of the servers', the times pooled.",
              f"- Requests counted by the metrics: {counted['on']:,.0f}, for {counted['sent_on']:,.0f} sent "
              f"while on (none while off). The prediction log: {log['written']:,.0f} rows written and "
              f"{log['dropped']:,.0f} dropped, for {log['scored']:,.0f} scored."]
    return "\n".join(lines)


def reasons_table() -> str:
    """What the reason codes cost (bench/reasons.json)."""
    report = _load("reasons.json")
    f, inner = report["figures"], report["in_process"]
    lines = ["| request | reasons | p50 ms | p99 ms | requests/s | rows/s |", "|---|---|---|---|---|---|"]
    for n in (1, 1000):
        for k in (0, 3):
            r = f[f"{n}_{k}"]
            label = f"{n} row{'s' if n > 1 else ''}"
            lines.append(f"| {label} | {k or 'none'} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                         f"{r['requests_per_s']:.1f} | {r['rows_per_s']:,.0f} |")
    one, thousand = report["one_row_p50_ratio"], report["thousand_rows_per_s_ratio"]
    lines += ["", f"- One row with 3 reasons: **{one:.2f}×** the p50 without (the goal: at most 2×). "
              f"1000 rows with 3 reasons: **{thousand:.2f}×** the rows/s without.",
              f"- In process, the explanation alone (TreeSHAP over the compiled features): "
              f"{inner['explain_1_rows_ms']:.2f} ms for 1 row, {inner['explain_1000_rows_ms']:.0f} ms for "
              "1000: exact Shapley values walk every tree's paths for every row, about half a millisecond "
              "a row, against the compiled trees' few microseconds a row for the score itself. Ask for "
              "reasons on the rows that need them.",
              f"- One server, one client (wrk), {report['rounds']} rounds of {report['seconds_per_run']:g} s "
              "per case, the cases in turn."]
    return "\n".join(lines)


def copy_table() -> str:
    """The prediction log's COPY against psycopg 3 and ADBC (bench/copy_compare.json)."""
    report = _load("copy_compare.json")
    lines = ["| requests of | rows written | ours (pg_copy, psycopg2) ms | psycopg 3 `copy` ms | ADBC ms |",
             "|---|---|---|---|---|"]
    for key, r in report["median_ms"].items():
        size = int(key.removeprefix("requests_of_"))
        written = report["rows_written"][key]
        lines.append(f"| {size} customer{'s' if size > 1 else ''} | {written:,} | {r['ours']:.0f} | "
                     f"{r['psycopg3']:.0f} | {r['adbc']:.0f} |")
    return "\n".join(lines)


def _mean_live(report: dict, metric: str) -> float:
    """The served versions' live figure over the months after the first: the AUC's mean, the
    Brier score weighted by the months' rows (as the as-fitted figures are)."""
    months = [m for m in report["months"] if "as_fitted" in m]
    if metric == "roc_auc":
        return sum(m["live"]["roc_auc"] for m in months) / len(months)
    rows = sum(m["live"]["rows"] for m in months)
    return sum(m["live"]["brier"] * m["live"]["rows"] for m in months) / rows


def replay_table() -> str:
    """`make replay`'s months and pooled figures (bench/replay.json)."""
    report = _load("replay.json")
    lines = ["| month | served | gate on the candidate | live rows | ROC AUC | Brier | as fitted AUC | "
             "monitor AUC |", "|---|---|---|---|---|---|---|---|"]
    for m in report["months"]:
        fitted = m.get("as_fitted", {}).get("roc_auc")
        lines.append(f"| {m['month']} | v{m['served']['version']} | {m['gate'].get('verdict')} | "
                     f"{m['live']['rows']} | {m['live']['roc_auc']:.3f} | {m['live']['brier']:.3f} | "
                     f"{'' if fitted is None else f'{fitted:.3f}'} | {m['monitor']['roc_auc']:.3f} |")
    served, frozen, gate = report["pooled"]["served"], report["pooled"]["frozen"], report["gate"]
    fitted = report.get("as_fitted", {})
    lines += ["", f"- Pooled over the {len(report['months'])} months ({served['rows']:,} contacts), the "
              f"versions served: **ROC AUC {served['roc_auc']:.3f}, Brier {served['brier']:.3f}**; the "
              f"starting version never retrained: ROC AUC {frozen['roc_auc']:.3f}, "
              f"Brier {frozen['brier']:.3f}.",
              f"- Shipped as fitted (without the newest month), the candidates would have scored a mean "
              f"monthly ROC AUC of {fitted.get('roc_auc_mean', float('nan')):.3f} and a Brier of "
              f"{fitted.get('brier', float('nan')):.3f} over the months after the first; the versions "
              f"served, fitted on every contact, {_mean_live(report, 'roc_auc'):.3f} and "
              f"{_mean_live(report, 'brier'):.3f} over the same months: they ship refit.",
              f"- The gate refused {gate['refused']} candidate(s). On {gate['null_comparisons']} pairs of "
              f"equally good models (the same recipe and months, another seed) its rule refused "
              f"{gate['false_refusals']}; a fixed 0.02 margin on the two AUCs refused "
              f"{gate['false_refusals_fixed_margin']}.",
              f"- The run took {report['seconds'] / 60:.0f} minutes ({report['recipe']} recipe)."]
    return "\n".join(lines)


def exit_codes_table() -> str:
    """Every `chaos` command's exit codes, as `chaos --help` gives them (cli.EXIT_CODES)."""
    return "\n".join(["| code | meaning |", "|---|---|",
                      *(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items())])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z])")


def first_sentence(source: str) -> str | None:
    """The first sentence of a module's docstring, on one line; None when it has none."""
    docstring = ast.get_docstring(ast.parse(source))
    if not docstring:
        return None
    paragraph = " ".join(docstring.split("\n\n", 1)[0].split())
    return SENTENCE_END.split(paragraph, maxsplit=1)[0]


def layers(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The package's parts, lowest first, as its layers contract orders them (import-linter's,
    [tool.importlinter] in pyproject.toml): a folder or a top-level module each."""
    contract = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"][0]
    return [part.strip().rsplit(".", 1)[-1] for layer in reversed(contract["layers"])
            for part in layer.split("|")]


def modules_table(package: Path = PACKAGE, order: Sequence[str] | None = None) -> str:
    """Every module of the package, sub-folders included, with the first sentence of its
    docstring: read from the source (ast), so nothing is imported. The parts come in ``order``
    (the package's own: its layers, lowest first), a folder's modules alphabetically after its
    ``__init__.py``. A module without a docstring stops `make docs` (an ``__init__.py`` without
    one is left out)."""
    if order is None:
        order = layers() if package == PACKAGE else []

    def place(path: Path) -> tuple[int, Path]:
        part = path.relative_to(package).parts[0].removesuffix(".py")
        return (-1 if part == "__init__" else order.index(part) if part in order else len(order)), path

    lines = ["| module | what it holds |", "|---|---|"]
    for path in sorted(package.rglob("*.py"), key=place):
        name = path.relative_to(package.parent).as_posix()
        summary = first_sentence(path.read_text())
        if summary is None and path.name != "__init__.py":
            raise ValueError(f"{name} has no docstring: its first sentence is its line in "
                             "docs/architecture.md")
        if summary is not None:
            lines.append(f"| `{name}` | {_cell(summary)} |")
    return "\n".join(lines)


def _commands(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, str]]:
    """Each command of the parser, sub-commands spelled out (`chaos db init`), with its help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                nested = list(_commands(sub, f"{prefix} {name}"))
                yield from nested or [(f"{prefix} {name}", helps[name])]


def commands_table() -> str:
    """Every `chaos` command, as cli.build_parser() defines it, with its one-line help."""
    return "\n".join(["| command | what it does |", "|---|---|",
                      *(f"| `{command}` | {_cell(meaning)} |" for command, meaning in
                        _commands(build_parser(), "chaos"))])


def _column_row(column: str, kind: str) -> str:
    if column == schema.DATE:
        months = Settings.model_fields["max_indicator_age_months"].default
        return (f"| `{column}` | {kind} `YYYY-MM-DD` (zero-padded) | the day of the contact; needs "
                f"indicators for its month or the {months} months before it |")
    if column in schema.INTEGERS:
        bounds = schema.INTEGERS[column]
        return (f"| `{column}` | whole number (`{kind}`) | {bounds.low:,} to {bounds.high:,}: "
                f"{bounds.meaning} |")
    return f"| `{column}` | {kind} | {', '.join(f'`{v}`' for v in schema.CATEGORIES[column])} |"


def input_table() -> str:
    """The input columns, in request order: the MLflow signature's type of each, and the values
    schema.py allows."""
    types = {spec.name: spec.type.name for spec in schema.signature().inputs.inputs}
    return "\n".join(["| column | type (signature) | allowed values |", "|---|---|---|",
                      *(_column_row(column, types[column]) for column in schema.INPUT_COLUMNS)])


def limits_list() -> str:
    """docs/api.md's limits: the settings' defaults (config.py) and uvicorn's own bounds, which
    `chaos serve` keeps (serve.py)."""
    limit = {name: field.default for name, field in Settings.model_fields.items()}
    keep_alive = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
    return "\n".join([
        f"- at most {limit['max_rows']:,} rows and {limit['max_body_bytes'] / 2**20:g} MiB per request: "
        "413 beyond, before the body is parsed or scored (a client that sends its whole body before "
        "it reads gets the answer too);",
        f"- at most {limit['max_reason_rows']:,} rows in a request asking for reason codes: 413 beyond "
        "(exact TreeSHAP costs about 0.6 ms a row);",
        f"- at most {limit['max_in_flight']} requests scored at once: 503 beyond, at once (a body still "
        "arriving holds no slot);",
        f"- an answer within {limit['request_timeout_seconds']:g} s: else 504;",
        f"- a request head within {limit['header_timeout_seconds']:g} s of the connection (or of the "
        f"previous answer), its body within {limit['body_timeout_seconds']:g} s of its head: else 408 "
        f"and the connection closed; a head of {DEFAULT_MAX_INCOMPLETE_EVENT_SIZE // 1024} KiB at most: "
        "else 431;",
        f"- idle keep-alive connections closed after {keep_alive} s; at most "
        f"{limit['max_connections']:,} connections open: past them, 503.",
    ])


BLOCKS: dict[str, Callable[[], str]] = {"bench": bench_table, "breakdown": breakdown_table,
                                        "outage": outage_table, "soak": soak_line,
                                        "overhead": overhead_table, "settings": settings_table,
                                        "exit_codes": exit_codes_table, "replay": replay_table,
                                        "reasons": reasons_table, "copy": copy_table,
                                        "modules": modules_table, "commands": commands_table,
                                        "inputs": input_table, "limits": limits_list}
BLOCK = re.compile(r"(<!-- rendered: (\w+) -->\n)(.*?)(<!-- end -->)", re.S)


def render(text: str) -> str:
    return BLOCK.sub(lambda m: f"{m.group(1)}{BLOCKS[m.group(2)]()}\n{m.group(4)}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a document is not up to date")
    args = parser.parse_args()
    stale = []
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text()
        new = render(text)
        if new != text:
            stale.append(doc.name)
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        sys.exit(f"not rendered from bench/*.json: {', '.join(stale)}; run make docs")
    print(f"{'stale' if args.check and stale else 'rendered'}: {', '.join(stale) or 'nothing to change'}")


if __name__ == "__main__":
    main()
