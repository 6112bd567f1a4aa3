"""What the inference log costs per prediction, split by thread: ``InferenceLog.record`` on the
request thread, ``InferenceLog.flush`` (build, redact, encode, write) on the writer's thread.

The demo model's one-row request (the seed's example) and its answer, recorded ``--count`` times
in a Flask request context, then flushed in batches of ``--batch`` (about what the writer takes
every 0.2 s at 400 requests/s) to a file in a temporary directory, with the default masks on::

    python tests/benchmarks/inference_log_cost.py [--count 20000] [--rows 1] [--no-masks]
    python tests/benchmarks/inference_log_cost.py --callgrind [--count 4000]

The first prints CPU time per record (best of 5, ``time.thread_time``); the second runs itself
under ``valgrind --tool=callgrind`` twice, counting instructions only while records are made
(``record``), then while they are made and written (``both``), and prints instructions per
record for each thread's share: deterministic where the timed figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from flask import Flask, Response

from inferwatch.contract import inference_log as il
from inferwatch.contract.outcomes import PredictionOutcome
from inferwatch.proxy.inference_log import InferenceLog, InferenceLogCounts
from inferwatch.proxy.log_files import RollingFiles
from inferwatch.proxy.prediction import read_prediction
from inferwatch.proxy.redaction import EMAIL, DIGITS, Redactor
from inferwatch.stack.demo_model import SEED_EXAMPLE

ANSWER = b'{"predictions": [0]}'


def setup(rows: int, masks: bool) -> tuple[InferenceLog, object, Response]:
    example = SEED_EXAMPLE["dataframe_split"]
    body = json.dumps({"dataframe_split": {**example, "data": example["data"] * rows}}).encode()
    prediction = read_prediction(body, "application/json", "r")
    log = InferenceLog(model=("diabetes-demo", "1"), counts=InferenceLogCounts({}), sample=il.Sample(1.0),
                       redactor=Redactor(masks=(EMAIL, DIGITS) if masks else ()),
                       files=RollingFiles(tempfile.mkdtemp(prefix="inferwatch-log-cost-"), 10**10, 3600),
                       flush_interval=3600, capacity=10**7, max_queued_bytes=10**12)
    return log, prediction, Response(ANSWER, status=200, content_type="application/json")


def record(log: InferenceLog, prediction, response: Response, ids: list[str]) -> None:
    for request_id in ids:
        log.record(prediction, request_id, prediction.format, response, PredictionOutcome.SUCCESS, 0.00123, 0.00098)


def timed(args) -> None:
    log, prediction, response = setup(args.rows, args.masks)
    ids = [format(n, "032x") for n in range(args.batch)]
    best_record = best_flush = float("inf")
    with Flask(__name__).test_request_context("/predict", method="POST"):
        record(log, prediction, response, ids)
        log.flush()  # warm
        for _ in range(5):
            spent_record = spent_flush = 0.0
            for _ in range(args.count // args.batch):
                started = time.thread_time()
                record(log, prediction, response, ids)
                recorded = time.thread_time()
                log.flush()
                spent_record += recorded - started
                spent_flush += time.thread_time() - recorded
            done = args.count // args.batch * args.batch
            best_record = min(best_record, spent_record / done * 1e6)
            best_flush = min(best_flush, spent_flush / done * 1e6)
    log.close()
    print(f"{args.rows} row(s), masks {'on' if args.masks else 'off'}, best of 5 x {args.count}: record() "
          f"{best_record:.1f} us/request (request thread), flush() {best_flush:.1f} us/record in batches of "
          f"{args.batch} (writer thread), {best_record + best_flush:.1f} us in all")


def instrumented(args) -> None:
    """One run under callgrind: instructions counted only while records are made (and written)."""
    log, prediction, response = setup(args.rows, args.masks)
    ids = [format(n, "032x") for n in range(args.count)]

    def instrumentation(state: str) -> None:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True, capture_output=True)

    with Flask(__name__).test_request_context("/predict", method="POST"):
        record(log, prediction, response, ids[:200])
        log.flush()
        instrumentation("on")
        for start in range(0, args.count, args.batch):
            record(log, prediction, response, ids[start:start + args.batch])
            if args.instrumented == "both":
                log.flush()
        instrumentation("off")
    log.close()


def under_callgrind(args) -> None:
    collected = {}
    for part in ("record", "both"):
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null",
                   sys.executable, __file__, "--instrumented", part, "--count", str(args.count),
                   "--batch", str(args.batch), "--rows", str(args.rows), *([] if args.masks else ["--no-masks"])]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        collected[part] = int(re.search(r"Collected : (\d+)", done.stderr).group(1)) / args.count
    print(f"{args.rows} row(s), masks {'on' if args.masks else 'off'}, callgrind, {args.count} records: "
          f"record() {collected['record'] / 1000:.1f} k instructions/request (request thread), "
          f"flush() {(collected['both'] - collected['record']) / 1000:.1f} k instructions/record (writer thread)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=80)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--no-masks", dest="masks", action="store_false")
    parser.add_argument("--callgrind", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--instrumented", choices=("record", "both"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.instrumented:
        instrumented(args)
    elif args.callgrind:
        under_callgrind(args)
    else:
        timed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
