"""Which WSGI server and thread count should run the proxy? Measured side by side.

Runs each candidate in front of the same real MLflow model server, in interleaved rounds
(A B C A B C ...) so machine drift cancels out, with wrk at a fixed concurrency. Reports
requests/s, p50/p99 latency and the proxy's CPU seconds per 1,000 requests (from /proc).

    python tests/benchmarks/server_choice.py --upstream http://127.0.0.1:5005 [--rounds 3]

Needs wrk (Debian package) and, for the gunicorn candidate, gunicorn in the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from harness import cpu_seconds, run_wrk, wrk_script
from inferwatch.stack.processes import ManagedProcess, free_port

CANDIDATES = {
    "waitress-16": ([sys.executable, "-m", "inferwatch", "serve"], {"INFERWATCH_THREADS": "16"}),
    "gunicorn-gthread-16": (
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "16", "-b", "{addr}",
         "inferwatch.proxy.wsgi:application"],
        {},
    ),
    "granian-16": (
        [str(Path(sys.executable).parent / "granian"), "--interface", "wsgi", "--workers", "1",
         "--blocking-threads", "16", "--host", "127.0.0.1", "--port", "{port}", "--no-ws",
         "inferwatch.proxy.wsgi:application"],
        {},
    ),
    "uwsgi-16": (
        [str(Path(sys.executable).parent / "uwsgi"), "--http11-socket", "{addr}", "--processes", "1",
         "--threads", "16", "--enable-threads", "--lazy-apps", "--die-on-term", "--disable-logging",
         "--module", "inferwatch.proxy.wsgi:application"],
        {},
    ),
    # What inferwatch serve runs since issue 11: uWSGI's HTTP router in front of the same worker.
    "uwsgi-router-16": (
        [str(Path(sys.executable).parent / "uwsgi"), "--http", "{addr}", "--http-keepalive=75",
         "--socket", "{socket}", "--processes", "1", "--threads", "16", "--enable-threads", "--lazy-apps",
         "--die-on-term", "--disable-logging", "--module", "inferwatch.proxy.wsgi:application"],
        {},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="server-choice-"))
    script = wrk_script(work)
    servers = {}
    for name, (command, extra) in CANDIDATES.items():
        port = free_port()
        env = dict(os.environ, INFERWATCH_UPSTREAM=args.upstream, INFERWATCH_PORT=str(port),
                   INFERWATCH_LOG_LEVEL="WARNING", **extra)
        command = [part.format(addr=f"127.0.0.1:{port}", port=port, socket=work / f"{name}.sock") for part in command]
        process = ManagedProcess(name, command, work / f"{name}.log", env=env).start()
        process.wait_ready(f"http://127.0.0.1:{port}/healthz")
        servers[name] = (process, f"http://127.0.0.1:{port}")
    results: dict = {}
    try:
        for concurrency in args.concurrency:
            for _ in range(args.rounds):
                for name, (process, url) in servers.items():
                    before = cpu_seconds(process.process.pid)
                    figures = run_wrk(url + "/predict", script, concurrency, args.seconds)
                    figures["cpu_ms_per_request"] = (cpu_seconds(process.process.pid) - before) * 1000 / max(figures["requests"], 1)
                    results.setdefault(f"c{concurrency}", {}).setdefault(name, []).append(figures)
    finally:
        for process, _ in servers.values():
            process.stop()
    print("| concurrency | server | req/s | p50 ms | p99 ms | proxy CPU ms/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for level, by_server in results.items():
        for name, runs in by_server.items():
            median = lambda key: sorted(r[key] for r in runs)[len(runs) // 2]  # noqa: E731
            print(f"| {level} | {name} | {median('rps'):.0f} | {median('p50_ms'):.2f} | {median('p99_ms'):.2f} "
                  f"| {median('cpu_ms_per_request'):.2f} | {sum(r['errors'] for r in runs)} |")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"raw figures: {work / 'results.json'}")


if __name__ == "__main__":
    main()
