"""What the span export's encoding costs: the SDK's encoder against the proxy's, on the proxy's own spans.

The proxy's app runs in-process (as in ``profile_request.py``: ``create_app`` with the demo
model's quality telemetry, in front of :mod:`fixed_upstream`), its spans kept in memory; they are
then encoded in batches of 512 (the batch span processor's export size) by the SDK's
``encode_spans(...).SerializePartialToString()`` and by
:class:`inferwatch.proxy.telemetry.span_encoding.SpanEncoder`, alternately, and each batch's two
encodings are checked to be the same bytes. Prints microseconds per span (best of ``--repeat``).

    python tests/benchmarks/span_encoding_cost.py [--requests 2048] [--repeat 7] [--chat]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench_proxy import env_with
from profile_request import HERE, drive
from inferwatch.stack.demo_model import SEED_EXAMPLE, save_demo_model
from inferwatch.stack.processes import ManagedProcess, free_port

BATCH = 512


def best_of(repeat: int, encode, batches) -> float:
    """Microseconds per span of the fastest of ``repeat`` passes over every batch."""
    spans = sum(len(batch) for batch in batches)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for batch in batches:
            encode(batch)
        best = min(best, time.perf_counter() - start)
    return best * 1e6 / spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--chat", action="store_true", help="chat requests to an upstream answering a chat completion")
    args = parser.parse_args(argv)

    from inferwatch.proxy.app import close_app, create_app
    from inferwatch.proxy.config import load_settings
    from inferwatch.proxy.telemetry import setup_telemetry
    from inferwatch.proxy.telemetry.span_encoding import SpanEncoder

    work = Path(tempfile.mkdtemp(prefix="inferwatch-span-encoding-"))
    port = free_port()
    answer = json.dumps({"predictions": [0]})
    body = json.dumps(SEED_EXAMPLE).encode()
    if args.chat:
        from fixed_upstream import CHAT_BODY
        answer = CHAT_BODY.decode()
        body = json.dumps({"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 64}).encode()
    upstream = ManagedProcess("upstream", [sys.executable, str(HERE / "fixed_upstream.py"), "--port", str(port),
                                           "--answer", answer], work / "upstream.log", env=env_with()).start()
    try:
        upstream.wait_ready(f"http://127.0.0.1:{port}/ping", timeout=30)
        spans = InMemorySpanExporter()
        telemetry = setup_telemetry(span_processors=[SimpleSpanProcessor(spans)], environ={})
        settings = load_settings({"upstream": f"http://127.0.0.1:{port}",
                                  "model_dir": str(save_demo_model(work / "model"))}, environ={})
        app = create_app(settings, telemetry, start_sampler=False)
        assert drive(app.wsgi_app, body, args.requests) == args.requests, "a prediction did not answer 200"
        finished = spans.get_finished_spans()
        close_app(app)
    finally:
        upstream.stop()

    batches = [finished[start:start + BATCH] for start in range(0, len(finished), BATCH)]
    encoder = SpanEncoder()
    for batch in batches:
        assert encoder.encode(batch) == encode_spans(batch).SerializePartialToString(), "the encodings differ"
    sdk, ours = [], []
    for _ in range(3):  # alternated, so that drift falls on both
        sdk.append(best_of(args.repeat, lambda batch: encode_spans(batch).SerializePartialToString(), batches))
        ours.append(best_of(args.repeat, encoder.encode, batches))
    attributes = sum(len(span.attributes) for span in finished) / len(finished)
    print(f"{len(finished)} spans of {args.requests} {'chats' if args.chat else 'predictions'} "
          f"({attributes:.1f} attributes each), batches of {BATCH}, the same bytes: "
          f"SDK {min(sdk):.1f} us/span, inferwatch {min(ours):.1f} us/span ({min(sdk) / min(ours):.1f} times faster)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
