"""The ``inferwatch`` command.

``inferwatch serve``
    Run the proxy (see :mod:`inferwatch.proxy.config` for every flag and its environment variable).
``inferwatch demo-model DIR [--probabilities]``
    Train the demo model and save it to DIR for ``mlflow models serve -m DIR``, with its profile.
``inferwatch profile DATA [--model DIR] [--labels COLUMN]``
    Build a model's reference profile from its training data (see :mod:`inferwatch.stack.profile`).
``inferwatch up``
    Run the whole stack natively (see :mod:`inferwatch.stack.up`); Ctrl-C stops it.
``inferwatch load``
    Send demo predictions to a proxy and print a summary (see :mod:`inferwatch.stack.load`).
``inferwatch traces``
    The slowest or failed traces in the trace store, model time vs proxy time, or one trace's
    span tree (see :mod:`inferwatch.stack.traces`).
``inferwatch logs``
    The inference log: tail and filter its records, or export labelled rows for retraining
    (see :mod:`inferwatch.stack.inference_logs`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from inferwatch import __version__
from inferwatch.proxy.config import HELP, ConfigError, Settings, env_name, flag_name, load_settings, plain, shown_default
from inferwatch.stack.up import DEFAULT_TRAFFIC_RATE, StackPorts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferwatch", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"inferwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the monitoring proxy")
    for field in dataclasses.fields(Settings):
        serve.add_argument(
            flag_name(field.name),
            dest=field.name,
            default=None,
            metavar=field.name.upper(),
            help=f"{plain(field.metadata[HELP])} (env {env_name(field.name)}; default {plain(shown_default(field))})"
                 .replace("%", "%%"),
        )

    demo = commands.add_parser("demo-model", help="train and save the demo model")
    demo.add_argument("directory", help="where to save the MLflow model (must not exist)")
    demo.add_argument("--probabilities", action="store_true",
                      help="answer class probabilities (predict_proba), calibrated on labelled reference data")

    profile = commands.add_parser("profile", help="build a model's reference profile from training data")
    profile.add_argument("data", help="training data, .csv or .parquet")
    profile.add_argument("--model", help="the MLflow model directory: scores the data, and the profile goes beside it")
    profile.add_argument("--predictions", metavar="COLUMN", help="a column of the data holding the predictions")
    profile.add_argument("--labels", metavar="COLUMN",
                         help="a column of true classes (labelled reference data, with --model): calibrates the "
                              "model's class probabilities for the estimated performance")
    profile.add_argument("--positive-class", default="", metavar="CLASS",
                         help="with --labels and two classes: the class precision, recall and F1 are about "
                              "(default: the second, as predict_proba orders them)")
    profile.add_argument("--exclude", metavar="COLUMN", action="append", default=[], help="a column that is no feature")
    profile.add_argument("-o", "--output", help="where to write (default: inferwatch-profile.json in --model)")
    profile.add_argument("--name", default="", help="the model's name, as the proxy labels it")
    profile.add_argument("--version", dest="model_version", default="", help="the model's version")
    profile.add_argument("--bins", type=int, default=10, help="quantile bins per numeric feature (default 10)")
    profile.add_argument("--top", type=int, default=10, help="categories kept per categorical feature (default 10)")
    profile.add_argument("--task", choices=("auto", "classification", "regression"), default="auto")

    up = commands.add_parser("up", help="run the whole stack as native processes")
    up.add_argument("--run-dir", default=".run", help="logs, data and the demo model (default .run)")
    for field in dataclasses.fields(StackPorts):
        up.add_argument(f"--{field.name.replace('_', '-')}-port", dest=f"{field.name}_port", type=int,
                        default=field.default, metavar="PORT", help=f"default {field.default}")
    up.add_argument("--traffic-rate", type=float, default=DEFAULT_TRAFFIC_RATE, metavar="PER_SECOND",
                    help="demo predictions a second once Prometheus has scraped the proxy, until the stack "
                         f"stops; 0: none (default {DEFAULT_TRAFFIC_RATE:g})")
    up.add_argument("--bad-share", type=float, default=0.0, help="fraction of bad demo requests, 0..1")
    up.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    load = commands.add_parser("load", help="send demo predictions and summarize the answers")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="the proxy (default http://127.0.0.1:8000)")
    load.add_argument("--count", type=int, default=None, help="requests to send (default 100 without --duration)")
    load.add_argument("--rate", type=float, default=None, help="requests per second (default: as fast as possible)")
    load.add_argument("--concurrency", type=int, default=4)
    load.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    load.add_argument("--bad-share", type=float, default=0.0, help="fraction of bad requests, 0..1")

    traces = commands.add_parser("traces", help="list the slowest or failed traces: model time vs proxy time")
    traces.add_argument("--jaeger", default=None, metavar="URL",
                        help="Jaeger's query API (env INFERWATCH_JAEGER_URL, default http://127.0.0.1:16686)")
    traces.add_argument("--service", default=None, help="the traced service (default inferwatch)")
    traces.add_argument("--since", default="15m", help="how far back to look, e.g. 15m, 1h, 90s (default 15m)")
    traces.add_argument("--slow", action="store_true", help="only traces at least the latency alert's threshold long")
    traces.add_argument("--errors", action="store_true", help="only traces with an error")
    traces.add_argument("--trace", default=None, metavar="ID", help="show one trace's span tree")
    traces.add_argument("--request-id", default=None, metavar="ID", help="show the trace of the answer with this X-Request-Id")
    traces.add_argument("--limit", type=int, default=20, help="traces to list (default 20)")

    logs = commands.add_parser("logs", help="tail and filter the inference log, or export labelled rows")
    logs.add_argument("paths", nargs="*", metavar="PATH",
                      help="log directories or files (default: env INFERWATCH_PAYLOAD_LOG_DIR, else .run/inference-log)")
    logs.add_argument("--model", default=None, help="only this model's records")
    logs.add_argument("--model-version", default=None, help="only this model version's records")
    logs.add_argument("--outcome", default=None, help="success, failure, or a failure's reason (e.g. model_rejected)")
    logs.add_argument("--kind", choices=("prediction", "feedback"), default=None, help="only records of this kind")
    logs.add_argument("--since", default=None, help="records from then on: a duration back (15m, 2h) or an ISO time")
    logs.add_argument("--until", default=None, help="records up to then: a duration back or an ISO time")
    logs.add_argument("-n", "--lines", type=int, default=20, help="print the last N matching records (default 20, 0: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="then print new records as they are written")
    logs.add_argument("--join-feedback", metavar="OUT", default=None,
                      help="write labelled rows (predictions joined with their feedback) to OUT.parquet or OUT.csv")
    return parser


def _logs(args) -> int:
    from inferwatch.stack.inference_logs import DEFAULT_DIRECTORY, LogReadError, RecordFilter, record_time, run

    try:
        keep = RecordFilter(model=args.model, model_version=args.model_version, outcome=args.outcome, kind=args.kind,
                            since=record_time(args.since) if args.since else None,
                            until=record_time(args.until) if args.until else None)
    except LogReadError as error:
        print(f"inferwatch logs: {error}", file=sys.stderr)
        return 2
    paths = args.paths or [os.environ.get(env_name("payload_log_dir")) or DEFAULT_DIRECTORY]
    return run(paths, keep, max(args.lines, 0), args.follow, args.join_feedback)


def _traces(args) -> int:
    from inferwatch.stack.traces import DEFAULT_JAEGER_URL, TracesQuery, TraceStoreError, parse_since, run

    try:
        since = parse_since(args.since)
    except ValueError as error:
        print(f"inferwatch traces: --since {error}", file=sys.stderr)
        return 2
    query = TracesQuery(jaeger_url=args.jaeger or os.environ.get("INFERWATCH_JAEGER_URL") or DEFAULT_JAEGER_URL,
                        since_s=since, slow=args.slow, errors=args.errors, trace_id=args.trace,
                        request_id=args.request_id, limit=max(args.limit, 1), **({"service": args.service} if args.service else {}))
    try:
        status, text = run(query)
    except TraceStoreError as error:
        print(f"inferwatch traces: {error} (is `inferwatch up` running? see --jaeger)", file=sys.stderr)
        return 1
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo-model":
        from inferwatch.stack.demo_model import save_demo_model

        print(save_demo_model(args.directory, probabilities=args.probabilities))
        return 0
    if args.command == "profile":
        from inferwatch.stack.profile import profile_model

        try:
            path = profile_model(args.data, args.model, output=args.output, prediction_column=args.predictions,
                                 label_column=args.labels, positive_class=args.positive_class, exclude=args.exclude, name=args.name, version=args.model_version,
                                 bins=args.bins, top=args.top, task=args.task)
        except (OSError, ValueError) as error:
            print(f"inferwatch profile: {error}", file=sys.stderr)
            return 2
        print(path)
        return 0
    if args.command == "load":
        from inferwatch.stack.load import LoadPlan, run_load

        count = args.count if args.count is not None or args.duration is not None else 100
        try:
            plan = LoadPlan(args.url.rstrip("/"), count, args.rate, args.concurrency, args.duration, args.bad_share)
        except ValueError as error:
            print(f"inferwatch load: {error}", file=sys.stderr)
            return 2
        print(run_load(plan).summary())
        return 0
    if args.command == "traces":
        return _traces(args)
    if args.command == "logs":
        return _logs(args)
    if args.command == "up":
        from pathlib import Path

        from inferwatch.stack.up import up

        ports = StackPorts(**{field.name: getattr(args, f"{field.name}_port") for field in dataclasses.fields(StackPorts)})
        if args.traffic_rate < 0 or not 0.0 <= args.bad_share <= 1.0:
            print("inferwatch up: --traffic-rate must be 0 or more, --bad-share between 0 and 1", file=sys.stderr)
            return 2
        return up(Path(args.run_dir), ports, args.duration, args.bad_share, args.traffic_rate)

    flags = {field.name: getattr(args, field.name) for field in dataclasses.fields(Settings)}
    try:
        settings = load_settings(flags)
    except ConfigError as error:
        print(f"inferwatch: bad setting {error}", file=sys.stderr)
        return 2
    from inferwatch.contract.profile import ProfileError
    from inferwatch.proxy.model import load_model_identity
    from inferwatch.proxy.server import serve

    try:
        load_model_identity(settings)  # a bad profile stops the start here, before uWSGI
    except ProfileError as error:
        print(f"inferwatch: bad model profile {error}", file=sys.stderr)
        return 2

    serve(settings)  # replaces this process with the server
    return 0
