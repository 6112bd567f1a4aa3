"""A py-spy recording of ``profile_request.py`` summed into the request path's parts.

    py-spy record --gil --nonblocking --format raw --full-filenames --threads --rate 250 -o spy.txt -- \\
        scripts/python tests/benchmarks/profile_request.py --count 8000 --rounds 1
    python tests/benchmarks/stack_breakdown.py spy.txt --requests 8000

With ``--gil`` py-spy samples only the thread that holds the GIL, so the figures are CPU spent
in Python, on whichever thread. Only samples taken while requests were driven count (stacks through ``drive``, and the
exporters' threads). Each sample is charged twice: to the *activity* it belongs to (the
outermost frame of the stack that names one: the Flask instrumentation's span and duration
around the request, our counting, the quality telemetry, the MLflow call and its client span,
...) and to the *component* whose code was running (the leaf frame's package). Figures are
microseconds of CPU per request, from the sample counts and the sampling rate.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from profile_request import component

# Activities, outermost first: a sample belongs to the first whose marker is in its stack.
ACTIVITIES = (
    ("OtelBatchSpanRecordProcessor", "span export (BatchSpanProcessor thread: OTLP encoding and POST)"),
    ("OtelPeriodicExportingMetricReader", "metric export (OTLP, every 5 s)"),
    ("inferwatch-access-log", "request log writer thread"),
    ("inferwatch-host-sampler", "host sampler thread"),
    ("quality.py", "quality telemetry (inferwatch.proxy.quality)"),
    ("requests/sessions.py", "MLflow call: requests, urllib3, http.client"),
    ("instrumentation/requests/__init__.py", "MLflow call: requests instrumentation (client span, duration)"),
    ("inferwatch/proxy/upstream.py", "MLflow call: the request built"),
    ("inferwatch/proxy/prediction.py", "body recognised (format, rows, JSON parse)"),
    ("request_body.py", "body read"),
    ("inferwatch/proxy/outcomes.py", "prediction counting (inferwatch.proxy.outcomes)"),
    ("access_log.py", "request log (queue put)"),
    ("correlation.py", "correlation (traceparent, X-Request-Id, exemplar mark)"),
    ("inferwatch/proxy/predictor.py", "prediction handler, rest"),
    ("_before_request (", "Flask instrumentation: before_request (server span, attributes)"),
    ("_teardown_request (", "Flask instrumentation: teardown (span end, duration histogram)"),
    ("_start_response (", "Flask instrumentation: start_response (status attributes)"),
    ("flask/app.py", "Flask and werkzeug dispatch"),
    ("_wrapped_app (", "Flask instrumentation: WSGI wrapper (duration histogram, environ)"),
    ("inferwatch/proxy/operational.py", "operational endpoints in front (active requests)"),
)

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")


def parse(path: Path):
    """(thread name, frames outermost first, sample count) per line of py-spy's raw output."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        yield frames[0], frames[1:], int(count)


def thread_id(label: str) -> str:
    return label.split(")", 1)[0]  # "thread (1699): MainThread" -> "thread (1699"


def breakdown(path: Path) -> tuple[Counter, Counter, int]:
    activities: Counter = Counter()
    components: Counter = Counter()
    request_samples = 0
    samples = list(parse(path))
    # The thread that drives the requests (py-spy does not always name it MainThread).
    drivers = {thread_id(thread) for thread, frames, _ in samples if any(f.startswith("drive (") for f in frames)}
    for thread, frames, count in samples:
        text = thread + ";" + ";".join(frames)
        if thread_id(thread) in drivers:
            if "drive (" not in text:
                continue  # start-up, model training, shutdown
            request_samples += count
        activity = next((name for marker, name in ACTIVITIES if marker in text), None)
        if activity is None:
            activity = ("other, request thread" if thread_id(thread) in drivers
                        else f"other thread: {thread.split(': ')[-1]}")
        activities[activity] += count
        leaf = FRAME.match(frames[-1]) if frames else None
        components[component(leaf.group("file")) if leaf else "unknown"] += count
    return activities, components, request_samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path, help="py-spy record --format raw --full-filenames output")
    parser.add_argument("--requests", type=int, required=True, help="requests driven while sampling")
    parser.add_argument("--rate", type=int, default=250, help="py-spy's --rate (samples per second)")
    args = parser.parse_args(argv)
    activities, components, request_samples = breakdown(args.raw)
    per_request = 1e6 / args.rate / args.requests
    total = sum(activities.values())
    print(f"{total * per_request:.0f} us of CPU per request sampled "
          f"(request thread {request_samples * per_request:.0f})")
    for title, counts in (("activity", activities), ("component (leaf frame)", components)):
        print(f"\n| {title} | us/request | share |\n|---|---|---|")
        for name, count in counts.most_common():
            print(f"| {name} | {count * per_request:.0f} | {count / total:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
