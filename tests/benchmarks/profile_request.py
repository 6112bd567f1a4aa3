"""Where a prediction's CPU goes: the proxy's WSGI app driven in-process, with everything on.

The app is the one ``inferwatch serve`` runs (``create_app``: the operational endpoints, the
instrumented Flask app, the quality telemetry of the demo model, the request log), with spans and
metrics exported over OTLP to a real collector. The upstream is
:mod:`fixed_upstream` (one fixed answer, in its own process), so the figures are the proxy's.
Requests are WSGI calls on one thread, without uWSGI or a socket in front, so the count is
repeatable: run it before and after a change on a quiet or a loaded machine and compare.

    python tests/benchmarks/profile_request.py [--count 3000] [--profile] [--telemetry off] [--rows 1] [--probabilities]
                                               [--chat [--genai off]]
                                               [--payload-log file|otlp|both] [--payload-log-sample 1.0]

``--chat`` sends chat requests to an upstream that answers a chat completion; ``--genai off`` then
makes the GenAI telemetry make no call (its cost is on minus off). ``--genai ab`` measures that
difference in one process: ``--rounds`` pairs of blocks of ``--count`` requests, on and off
alternating (on-off, then off-on), each block ending with the span export flushed so that its
process CPU includes the export of its own spans; it prints the median of the pairs' differences
and their range. Two runs on a shared machine differ by more than the telemetry costs; blocks
in one process do not.

``--payload-log`` turns the inference log on: JSON Lines files in a temporary directory, OTLP logs
to the collector, or both, at ``--payload-log-sample`` (default 1.0, every request); the records
are counted at the end, and the figure includes the writer's thread.

``--probabilities``: the demo model answering class probabilities (its profile calibrated on
labelled reference rows, so the estimated performance runs), the upstream answering ``[[0.8, 0.2]]``
per row instead of ``[0]``.

Prints CPU per request (the whole process: the request thread and the exporters' threads) and,
with ``--profile``, the request thread's own time by component (cProfile ``tottime`` summed by
where the code lives: the instrumentations, the SDK, Flask and werkzeug, requests and urllib3,
inferwatch, the rest), then the costliest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_proxy import env_with
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.demo_model import save_demo_model  # noqa: E402
from inferwatch.stack.processes import (
    CollectorPorts,
    ManagedProcess,
    build_collector,
    collector_command,
    collector_env,
    free_port,
)

HERE = Path(__file__).resolve().parent

# Component of a profiled function, by the first path fragment its file name contains.
COMPONENTS = (
    ("opentelemetry/instrumentation/flask", "instrumentation: flask"),
    ("opentelemetry/instrumentation/requests", "instrumentation: requests"),
    ("opentelemetry/instrumentation", "instrumentation: shared"),
    ("opentelemetry/util/http", "instrumentation: shared"),
    ("opentelemetry/sdk/metrics", "SDK: metrics"),
    ("opentelemetry/sdk/trace", "SDK: traces"),
    ("opentelemetry/semconv", "SDK: semantic conventions"),
    ("opentelemetry/", "OpenTelemetry API and context"),
    ("inferwatch/proxy/", "inferwatch"),
    ("inferwatch/contract/", "inferwatch"),
    ("flask/", "Flask"),
    ("werkzeug/", "werkzeug"),
    ("requests/", "requests"),
    ("urllib3/", "urllib3"),
    ("http/client", "http.client"),
    ("numpy/", "numpy"),
    ("pandas/", "pandas"),
)


def component(filename: str) -> str:
    filename = filename.rpartition("site-packages/")[2]
    for fragment, name in COMPONENTS:
        if fragment in filename:
            return name
    if filename.startswith("~") or filename == "<built-in>":
        return "builtins (C)"
    return "stdlib and others"


def environ_for(body: bytes) -> dict:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "profile", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def drive(app, body: bytes, count: int) -> int:
    """``count`` predictions through the WSGI app; returns how many answered 200."""
    ok = 0
    statuses = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    for _ in range(count):
        for _chunk in app(environ_for(body), start_response):
            pass
        ok += statuses.pop().startswith("200")
    return ok


def report(profile: cProfile.Profile, count: int, top: int) -> None:
    stats = pstats.Stats(profile)
    by_component: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        by_component[component(filename)] += tottime
    total = sum(by_component.values())
    print(f"\nrequest thread under cProfile: {total * 1e6 / count:.0f} us/request (profiler overhead included)")
    print("| component | us/request | share |")
    print("|---|---|---|")
    for name, seconds in sorted(by_component.items(), key=lambda item: -item[1]):
        print(f"| {name} | {seconds * 1e6 / count:.1f} | {seconds / total:.0%} |")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def ab_pairs(wsgi, body: bytes, args, genai_on: list[bool], tracer_provider) -> None:
    """GenAI on minus off, in blocks of ``args.count`` alternating in one process (see the docstring)."""
    def block(on: bool) -> tuple[float, float]:
        genai_on[0] = on
        tracer_provider.force_flush()
        cpu, thread = time.process_time(), time.thread_time()
        assert drive(wsgi, body, args.count) == args.count
        tracer_provider.force_flush()  # this block's spans exported, on this block's account
        return (time.process_time() - cpu) * 1e6 / args.count, (time.thread_time() - thread) * 1e6 / args.count

    differences = []
    for index in range(args.rounds):
        order = (True, False) if index % 2 == 0 else (False, True)
        figures = dict(zip(order, (block(order[0]), block(order[1]))))
        differences.append((figures[True][0] - figures[False][0], figures[True][1] - figures[False][1]))
    process, thread = (sorted(column) for column in zip(*differences))
    middle = len(differences) // 2
    print(f"GenAI telemetry of a chat, on - off, {args.rounds} pairs of blocks of {args.count}: "
          f"process CPU {process[middle]:+.0f} us/request (range {process[0]:+.0f}..{process[-1]:+.0f}), "
          f"request thread {thread[middle]:+.0f} us (range {thread[0]:+.0f}..{thread[-1]:+.0f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of --count; the median is printed")
    parser.add_argument("--callgrind", action="store_true",
                        help="running under valgrind --tool=callgrind --instr-atstart=no: count instructions "
                             "only while the timed rounds run (callgrind_control -i on/off)")
    parser.add_argument("--profile", action="store_true", help="one more round under cProfile, by component")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--save", type=Path, help="also write the cProfile stats to this file (pstats)")
    parser.add_argument("--telemetry", choices=("on", "off"), default="on")
    parser.add_argument("--model-quality", choices=("true", "false"), default="true")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after start-up, as inferwatch.proxy.wsgi does in a worker")
    parser.add_argument("--gc-threshold", type=int, nargs=3, help="gc.set_threshold(...) after start-up (an experiment)")
    parser.add_argument("--rows", type=int, default=1, help="rows per prediction (the seed's example repeated)")
    parser.add_argument("--chat", action="store_true",
                        help="chat requests (MLflow's unified LLM input) to an upstream that answers a chat completion")
    parser.add_argument("--genai", choices=("on", "off", "ab"), default="on",
                        help="off: the GenAI telemetry makes no call (the figure it costs is on minus off)")
    parser.add_argument("--payload-log", choices=("off", "file", "otlp", "both"), default="off",
                        help="the inference log: files in a temporary directory, OTLP logs, or both")
    parser.add_argument("--payload-log-sample", default="1.0")
    parser.add_argument("--probabilities", action="store_true",
                        help="the demo model answering class probabilities (the estimated performance on)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="inferwatch-profile-"))
    processes: list[ManagedProcess] = []
    try:
        upstream_port, collector = free_port(), CollectorPorts()
        answer = json.dumps({"predictions": [[0.8, 0.2] if args.probabilities else 0] * args.rows})
        if args.chat:
            from fixed_upstream import CHAT_BODY
            answer = CHAT_BODY.decode()
        upstream = ManagedProcess("upstream", [sys.executable, str(HERE / "fixed_upstream.py"), "--port",
                                               str(upstream_port), "--answer", answer],
                                  work / "upstream.log", env=env_with()).start()
        processes.append(upstream)
        upstream.wait_ready(f"http://127.0.0.1:{upstream_port}/ping", timeout=30)
        otelcol = ManagedProcess("otelcol", collector_command(build_collector()), work / "otelcol.log",
                                 env=env_with(**collector_env(collector, work / "traces.jsonl"))).start()
        processes.append(otelcol)
        otelcol.wait_ready(f"http://127.0.0.1:{collector.health}/", timeout=120)

        model = (save_demo_model(work / "model", probabilities=True) if args.probabilities
                 else save_demo_model(work / "model"))
        for key in [key for key in os.environ if key.startswith(("OTEL_", "INFERWATCH_"))]:
            del os.environ[key]
        os.environ.update({
            "INFERWATCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}", "INFERWATCH_MODEL_DIR": str(model),
            "INFERWATCH_MODEL_QUALITY": args.model_quality, "INFERWATCH_LOG_LEVEL": "INFO",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.otlp_http}",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            **({"OTEL_SDK_DISABLED": "true"} if args.telemetry == "off" else {}),
            **({"INFERWATCH_PAYLOAD_LOG_DIR": str(work / "inference-log")} if args.payload_log in ("file", "both") else {}),
            **({"INFERWATCH_PAYLOAD_LOG_OTLP": "true"} if args.payload_log in ("otlp", "both") else {}),
            "INFERWATCH_PAYLOAD_LOG_SAMPLE": args.payload_log_sample,
        })
        from inferwatch.proxy.access_log import configure_logging
        from inferwatch.proxy.app import close_app, create_app
        from inferwatch.proxy.config import load_settings
        from inferwatch.proxy.genai import GenAiTelemetry

        # Benchmark only: with GenAI off the predictor skips every GenAI step.
        genai_on = [args.genai != "off"]
        call_for = GenAiTelemetry.call_for
        GenAiTelemetry.call_for = lambda self, prediction: call_for(self, prediction) if genai_on[0] else None

        with open(os.devnull, "w") as devnull:
            listener = configure_logging("INFO", devnull)
            app = create_app(load_settings())
            app.extensions["inferwatch"]["access_log"]._stream = devnull
            example = SEED_EXAMPLE["dataframe_split"]
            body = json.dumps({"dataframe_split": {**example, "data": example["data"] * args.rows}}).encode()
            if args.chat:
                body = json.dumps({"messages": [{"role": "user", "content": "hello there"}], "temperature": 0.2,
                                   "max_tokens": 64}).encode()
            wsgi = app.wsgi_app
            assert drive(wsgi, body, args.warmup) == args.warmup, "the warm-up predictions did not answer 200"
            if args.gc_freeze:
                gc.collect()
                gc.freeze()
            if args.gc_threshold:
                gc.set_threshold(*args.gc_threshold)
            collections = [generation["collections"] for generation in gc.get_stats()]
            figures = []
            if args.genai == "ab":
                ab_pairs(wsgi, body, args, genai_on, app.extensions["inferwatch"]["telemetry"].tracer_provider)
                close_app(app)
                listener.stop()
                return 0
            if args.callgrind:
                subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True, capture_output=True)
            for _ in range(args.rounds):
                cpu, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
                assert drive(wsgi, body, args.count) == args.count
                figures.append(((time.process_time() - cpu) * 1e6 / args.count,
                                (time.thread_time() - thread) * 1e6 / args.count,
                                (time.perf_counter() - wall) * 1e6 / args.count))
            if args.callgrind:
                subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
            figures.sort()
            cpu_us, thread_us, wall_us = figures[len(figures) // 2]
            print(f"telemetry {args.telemetry}, model quality {args.model_quality}, GenAI {args.genai}, "
                  f"inference log {args.payload_log} (sample {args.payload_log_sample}), "
                  f"{'a chat' if args.chat else f'{args.rows} row(s)'}, "
                  f"{args.rounds} rounds of {args.count}: process CPU {cpu_us:.0f} us/request "
                  f"(request thread {thread_us:.0f}, other threads {cpu_us - thread_us:.0f}), wall {wall_us:.0f} us")
            collections = [generation["collections"] - before
                           for generation, before in zip(gc.get_stats(), collections)]
            print(f"garbage collections per 1000 requests by generation: "
                  f"{[round(n * 1000 / (args.count * args.rounds), 1) for n in collections]}, "
                  f"objects tracked at start {len(gc.get_objects())}")
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                drive(wsgi, body, args.count)
                profile.disable()
                report(profile, args.count, args.top)
                if args.save:
                    profile.dump_stats(args.save)
            close_app(app)
            listener.stop()
            if args.payload_log != "off":
                written, dropped = app.extensions["inferwatch"]["inference_log_counts"].snapshot()
                print(f"inference log: records written {written}, dropped {dropped}")
    finally:
        for process in reversed(processes):
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
