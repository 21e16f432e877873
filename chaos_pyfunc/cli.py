"""`chaos`: the command line for people, the Makefile, MLproject and CI.

Every command exits with one of EXIT_CODES, so a CronJob, CI or an alert tells a verdict from a
breakage: 1 is an answer (the gate refused, the inputs drifted), 3 a command that could not do
its work (a database away, a bug), whose traceback is logged (and sent to Sentry when it is on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from chaos_pyfunc import error_capture
from chaos_pyfunc.config import ConfigError, load_settings
from chaos_pyfunc.db import TABLES, DataError, init_schema, load_csv, make_engine, seed_embedded
from chaos_pyfunc.http.auth import KeysFileError
from chaos_pyfunc.scoring.package_version import UnusableModel

if TYPE_CHECKING:
    from chaos_pyfunc.scoring.pipeline import Hyperparameters


def _package_version() -> str:
    from importlib.metadata import version

    return f"chaos-pyfunc@{version('chaos-pyfunc')}"


def _db_init(args: argparse.Namespace) -> str:
    settings = load_settings()
    if args.seed and seed_embedded(settings):
        return f"created and seeded {settings.safe_url()}"
    engine = make_engine(settings)
    try:
        init_schema(engine)
    finally:
        engine.dispose()
    return f"schema ready in {settings.safe_url()}"


def _db_load(args: argparse.Namespace) -> str:
    settings = load_settings()
    engine = make_engine(settings)
    try:
        count = load_csv(engine, args.table, args.file)
    finally:
        engine.dispose()
    return f"loaded {count} rows into {args.table} at {settings.safe_url()}"


ALIASES = ("staging", "production")  # registry.ALIASES, without importing MLflow for --help
HYPERPARAMETERS = (("learning_rate", float, "gradient boosting's shrinkage"),
                   ("max_iter", int, "boosting rounds at most"),
                   ("max_leaf_nodes", int, "leaves per tree"),
                   ("min_samples_leaf", int, "contacts per leaf at least"))


class Refused(Exception):
    """The command ran and said no (a gate refusal, drift): its report is printed, the exit code is 1."""


DONE, VERDICT, USAGE, FAILURE = 0, 1, 2, 3
EXIT_CODES = {
    DONE: "done",
    VERDICT: "a verdict: the command did its work and says no (chaos promote or retrain: the gate "
             "refused; chaos drift: the inputs drifted; chaos monitor: the scores served did badly)",
    USAGE: "a usage or configuration error: a bad argument or setting, a missing file or model; "
           "nothing was done",
    FAILURE: "a failure: the command could not do its work (a database or registry away, a bug); "
             "its traceback is in the log",
}


def exit_codes_text() -> str:
    """The table of exit codes, for `chaos --help` and docs/operations.md."""
    lines = [f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items()]
    return "\n".join(["exit codes, every command:", *lines])


def _hyperparameters(args: argparse.Namespace) -> Hyperparameters:
    from chaos_pyfunc.scoring.pipeline import Hyperparameters

    given = {name: getattr(args, name) for name, _, _ in HYPERPARAMETERS if getattr(args, name) is not None}
    return replace(Hyperparameters(), **given)


def _train(args: argparse.Namespace) -> str:
    from chaos_pyfunc.lifecycle.train import TrainOptions, train  # MLflow is slow to import: only when needed

    result = train(TrainOptions(customers=args.customers, backtest_months=args.backtest_months,
                                export_dir=args.export, register=not args.no_register,
                                registered_model=load_settings().registered_model),
                   _hyperparameters(args))
    return json.dumps({"run_id": result.run_id, "model_uri": result.model_uri,
                       "version": result.version, "metrics": result.metrics}, indent=2)


def _promote(args: argparse.Namespace) -> str:
    from mlflow.exceptions import MlflowException

    from chaos_pyfunc.lifecycle import dataset, gate, registry

    if args.force and not args.reason:
        raise ConfigError("--force needs --reason TEXT: it is recorded on the version")
    settings = load_settings()
    client = registry.use_tracking_store(settings.registered_model)
    version, copied = args.version, ""
    if args.source:  # staging to production: one explicit step, the version copied with its run
        try:
            version = registry.copy_version(client, args.source, args.version, settings.registered_model)
        except MlflowException as exc:
            raise ConfigError(f"cannot copy version {args.version} of {args.source}: "
                              f"{exc.error_code}") from None
        copied = (f"copied version {args.version} of {args.source} as version {version} of "
                  f"{settings.registered_model}\n")
    try:
        verdict = gate.promote(client, dataset.load(args.customers, settings), settings, version,
                               args.alias, args.reason if args.force else None)
    except gate.GateError as exc:
        raise ConfigError(str(exc)) from None
    if not verdict.moved:
        raise Refused(copied + verdict.report())
    return copied + verdict.report()


def _retrain(args: argparse.Namespace) -> str:
    from chaos_pyfunc.lifecycle.retrain import retrain

    outcome = retrain(args.alias, load_settings(), force=args.force)
    if args.summary is not None:  # for machines: the CronJob's log, the replay
        summary = {"trained": outcome.verdict is not None, "version": outcome.version,
                   **(outcome.verdict.summary() if outcome.verdict else {"verdict": "not trained"})}
        args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    if not outcome.ok:
        raise Refused(outcome.message)
    return outcome.message


def _export(args: argparse.Namespace) -> str:
    from chaos_pyfunc.lifecycle import registry
    from chaos_pyfunc.lifecycle.train import export_model

    name = load_settings().registered_model
    registry.use_tracking_store(name)
    exported = export_model(args.model_uri, args.to, name=name)
    return f"exported {args.model_uri} (version {exported}) to {args.to}"


def _keys_create(args: argparse.Namespace) -> str:
    from chaos_pyfunc.http.auth import create

    key = create(args.file, args.client)
    return (f"{key}\n(a new key for {args.client} in {args.file}: give it to the client now, it is "
            "shown only this once; the file holds its id and hash)")


def _keys_revoke(args: argparse.Namespace) -> str:
    from chaos_pyfunc.http.auth import revoke

    gone = revoke(args.file, args.client, args.id)
    return f"revoked {len(gone)} key(s) of {args.client} in {args.file}: {', '.join(gone)}"


def _drift(args: argparse.Namespace) -> str:
    from chaos_pyfunc.lifecycle import drift, registry

    try:
        result = drift.report(load_settings(), args.since, args.reference)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    summary, page = drift.write(result, args.output)
    lines = [f"{result.rows} rows scored in the last {args.since} against {result.reference_rows} "
             f"training contacts: {len(result.drifted)} of {len(result.features)} features drifted"
             + (f" ({', '.join(result.drifted)})" if result.drifted else ""),
             f"report: {page}", f"summary: {summary}"]
    if os.environ.get("MLFLOW_TRACKING_URI"):  # kept in the registry, beside the version judged
        name = load_settings().registered_model
        run_id = registry.keep_report(
            registry.use_tracking_store(name), name, "drift", result.model_version, [page, summary],
            {"drifted_share": result.share, "rows": result.rows},
            {"since": args.since, "alarm": str(result.alarm).lower()})
        lines.append(f"kept in the registry: run {run_id} (artifacts drift/drift.html, drift/drift.json)")
    if result.alarm:
        alarm = f"drift alarm: more than {result.share_threshold:.0%} of the features drifted"
        raise Refused("\n".join([*lines, alarm]))
    return "\n".join(lines)


def _monitor(args: argparse.Namespace) -> str:
    from chaos_pyfunc.lifecycle import monitor, registry

    settings = load_settings()
    try:
        result = monitor.report(settings, args.since)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    summary, plot = monitor.write(result, args.output)
    lines = [f"{result.rows} rows scored in the last {args.since} with a known outcome:"]
    lines += [f"  version {m.model_version} {m.month}: {m.rows} rows, ROC AUC "
              f"{'-' if m.roc_auc is None else f'{m.roc_auc:.3f}'}, Brier {m.brier:.3f}, "
              f"mean appetence {m.mean_appetence:.3f} for a rate of {m.observed_rate:.3f}"
              for m in result.months]
    lines += [f"report: {plot}", f"summary: {summary}"]
    if os.environ.get("MLFLOW_TRACKING_URI"):  # kept in the registry, beside the version judged
        name = settings.registered_model
        versions = [int(m.model_version) for m in result.months if m.model_version.isdigit()]
        newest = str(max(versions)) if versions else None
        run_id = registry.keep_report(registry.use_tracking_store(name), name, "monitor", newest,
                                      [plot, summary], {"rows": result.rows},
                                      {"since": args.since, "alarm": str(bool(result.alarms)).lower()})
        lines.append(f"kept in the registry: run {run_id} (artifacts monitor/monitor.png, "
                     "monitor/monitor.json)")
    if result.alarms:
        raise Refused("\n".join([*lines, *(f"monitor alarm: {alarm}" for alarm in result.alarms)]))
    return "\n".join(lines)


def _score(args: argparse.Namespace) -> str:
    from chaos_pyfunc.scoring import batch  # MLflow is slow to import: only when needed

    try:
        if args.input is not None:
            report = batch.score_csv(args.model, args.input, Path(args.output), args.chunk_rows,
                                     reasons_k=args.reasons)
        else:
            engine = make_engine(load_settings())
            try:
                report = batch.score_table(args.model, engine, args.table, args.output, args.chunk_rows,
                                           reasons_k=args.reasons)
            finally:
                engine.dispose()
    except batch.BatchError as exc:
        raise DataError(str(exc)) from None
    return str(report)


def _serve(args: argparse.Namespace) -> str:
    from chaos_pyfunc.http.serve import serve  # MLflow is slow to import: only when needed

    serve(args.model or load_settings().model_uri, args.host, args.port)
    return "stopped"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0],
                                     epilog=exit_codes_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="create the schema and load CSV files").add_subparsers(
        required=True, metavar="ACTION")
    init = db.add_parser("init", help="create the tables (embedded default: also seed indicators)")
    init.add_argument("--no-seed", dest="seed", action="store_false",
                      help="do not seed the embedded SQLite database")
    init.set_defaults(run=_db_init)
    load = db.add_parser("load", help="load a CSV into a table, idempotently")
    load.add_argument("table", choices=sorted(TABLES))
    load.add_argument("file", type=Path)
    load.set_defaults(run=_db_load)

    train = commands.add_parser("train", help="train, evaluate, log and register a model version")
    train.add_argument("--customers", help="a customers CSV (default: the customers table)")
    train.add_argument("--backtest-months", type=int, default=6,
                       help="the last months scored one by one by a model of the months before")
    for name, kind, meaning in HYPERPARAMETERS:
        train.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{meaning} (hyperparameter)")
    train.add_argument("--export", type=Path, help="also write the model directory here (e.g. model)")
    train.add_argument("--no-register", action="store_true", help="log the model without registering it")
    train.set_defaults(run=_train)

    promote = commands.add_parser(
        "promote", help="point an alias at a version if it passes the gate against the alias's version")
    promote.add_argument("version")
    promote.add_argument("--alias", required=True, choices=ALIASES)
    promote.add_argument("--customers", help="judge on this customers CSV (default: the customers table)")
    promote.add_argument("--from", dest="source", metavar="MODEL",
                         help="copy VERSION of this registered model first (staging to production: "
                              "chaos-appetence-staging), its training run kept")
    promote.add_argument("--force", action="store_true", help="move the alias even if the gate refuses")
    promote.add_argument("--reason", help="why --force (recorded on the version)")
    promote.set_defaults(run=_promote)

    retrain = commands.add_parser(
        "retrain", help="if the tables changed since the alias's version: train, register, gate, promote")
    retrain.add_argument("--alias", required=True, choices=ALIASES)
    retrain.add_argument("--force", action="store_true",
                         help="train even on tables a candidate was refused on before")
    retrain.add_argument("--summary", type=Path, help="also write the verdict as JSON to this file")
    retrain.set_defaults(run=_retrain)

    export = commands.add_parser("export", help="write a registered version's files to a directory")
    export.add_argument("model_uri", help="e.g. models:/chaos-appetence@production")
    export.add_argument("--to", type=Path, required=True, help="the directory (e.g. model)")
    export.set_defaults(run=_export)

    keys = commands.add_parser("keys", help="API keys of the external clients (CHAOS_API_KEYS_FILE)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    created = key_commands.add_parser("create", help="add a new key for CLIENT to the file; print it once")
    revoked = key_commands.add_parser("revoke", help="remove CLIENT's keys (or one, with --id) from the file")
    for sub, run in ((created, _keys_create), (revoked, _keys_revoke)):
        sub.add_argument("client")
        sub.add_argument("--file", type=Path, required=True, help="the keys file (ids and hashes only)")
        sub.set_defaults(run=run)
    revoked.add_argument("--id", help="only this key id (rotation: create a new key, then revoke the old id)")

    drift = commands.add_parser("drift", help="compare the rows scored lately with the training data")
    drift.add_argument("--since", default="7d", help="the period, e.g. 7d or 24h (default 7d)")
    drift.add_argument("--output", type=Path, required=True, help="the folder for drift.html and drift.json")
    drift.add_argument("--reference", help="a customers CSV (default: the customers table)")
    drift.set_defaults(run=_drift)

    monitor = commands.add_parser(
        "monitor", help="join the appetences served to the outcomes known since: AUC, Brier, calibration")
    monitor.add_argument("--since", default="30d", help="the period, e.g. 30d or 24h (default 30d)")
    monitor.add_argument("--output", type=Path, required=True,
                         help="the folder for monitor.json and monitor.png")
    monitor.set_defaults(run=_monitor)

    score = commands.add_parser("score", help="score a whole CSV file or table in chunks (batch scoring)")
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path, help="a customers CSV")
    source.add_argument("--table", help="a table of the configured database (e.g. customers)")
    score.add_argument("--output", required=True,
                       help="the CSV to write (with --input) or the table to replace (with --table)")
    score.add_argument("--model", default="model", help="the model directory or URI (default: model)")
    score.add_argument("--chunk-rows", type=int, default=50_000, help="rows scored at a time")
    score.add_argument("--reasons", type=int, default=0, choices=range(20), metavar="K",
                       help="also write each row's K reason codes (1 to 19): reason_1_feature, "
                            "reason_1_effect, …, and the baseline")
    score.set_defaults(run=_score)

    serve = commands.add_parser("serve", help="serve the model over HTTP (what the image runs)")
    serve.add_argument("--model", help="a model directory or MLflow URI, e.g. models:/chaos-appetence/7 "
                       "(default: CHAOS_MODEL_URI, else model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    with suppress(ConfigError):  # a bad setting is reported by the command itself, below
        settings = load_settings()
        error_capture.start(settings.sentry_dsn, settings.environment, _package_version())
    try:
        print(args.run(args))
    except Refused as refusal:
        print(refusal)
        return VERDICT
    except (ConfigError, DataError, FileNotFoundError, UnusableModel, KeysFileError) as exc:
        print(f"chaos: error: {exc}", file=sys.stderr)
        return USAGE
    except Exception as exc:  # the command broke: not a verdict; the type only (its text may quote data)
        command = " ".join((sys.argv[1:] if argv is None else list(argv))[:1])
        logging.getLogger(__name__).exception("chaos %s failed", command)
        print(f"chaos: failed: {type(exc).__name__} (exit code {FAILURE}; the traceback is above)",
              file=sys.stderr)
        return FAILURE
    return DONE


if __name__ == "__main__":
    sys.exit(main())
