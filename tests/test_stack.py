"""The native stack (`inferwatch up`) and the traffic generator (`inferwatch load`)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import requests

from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.inference_logs import Reader
from inferwatch.stack.load import LoadPlan, run_load
from inferwatch.stack.processes import free_port, http_ok
from inferwatch.stack.traces import JaegerQuery
from inferwatch.stack.up import FIRST_SCRAPE_QUERY, StackPorts, port_answers, port_is_free
from support import ROOT, child_env, total


def test_load_report_agrees_with_the_proxys_counters(proxy):
    report = run_load(LoadPlan(proxy.url, count=60, concurrency=3, bad_share=0.3), progress=lambda *_: None)
    assert report.sent == 60
    assert 0 < report.succeeded < 60
    samples = proxy.metrics()
    assert total(samples, "prediction_success_total") == report.succeeded
    assert total(samples, "prediction_failure_total") == sum(report.failures.values())
    # Truncated JSON and a missing column, both answered by MLflow (its error codes).
    assert set(report.failures) <= {"400 BAD_REQUEST", "400 INVALID_PARAMETER_VALUE"}
    assert report.percentile(0.5) <= report.percentile(0.99)


def test_load_is_always_bounded():
    with pytest.raises(ValueError):
        LoadPlan(count=None, duration=None)
    with pytest.raises(ValueError):
        LoadPlan(bad_share=1.5)


def read_until(stream, marker: str, timeout: float) -> list[str]:
    """Lines of ``stream`` up to the one containing ``marker`` (fails after ``timeout``, or as
    soon as the stream ends without it)."""
    lines: list[str] = []
    done = threading.Event()

    def reader():
        for line in stream:
            lines.append(line.rstrip("\n"))
            if marker in line:
                break
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(timeout) and lines and marker in lines[-1], "\n".join(lines[-30:])
    return lines


def prometheus_value(port: int, query: str) -> float | None:
    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def stack_ports() -> StackPorts:
    return StackPorts(**{field.name: free_port() for field in dataclasses.fields(StackPorts)
                         if field.name != "alertmanager_cluster"})


def up_command(python: str, run_dir: Path, ports: StackPorts, *flags: str) -> list[str]:
    command = [python, "-m", "inferwatch", "up", "--run-dir", str(run_dir), *flags]
    for name, port in ports.named().items():
        command += [f"--{name.replace('_', '-')}-port", str(port)]
    return command


def stop(up: subprocess.Popen) -> list[str]:
    """SIGTERM, as Ctrl-C would stop it; the rest of its output."""
    up.send_signal(signal.SIGTERM)
    rest, _ = up.communicate(timeout=90)
    return rest.splitlines()


def assert_nothing_left_behind(ports: StackPorts, run_dir: Path) -> None:
    for name, port in ports.named().items():
        assert port_is_free(port), f"{name} still holds port {port}"
    leftovers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if str(run_dir) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def mails_about(run_dir: Path, alert: str) -> list[str]:
    new = run_dir / "mail" / "new"
    subjects = [line for path in (new.iterdir() if new.is_dir() else ()) for line in path.read_text().splitlines()
                if line.startswith("Subject:")]
    return [subject for subject in subjects if f"[FIRING:1] {alert} " in subject]


# The demo's promise: with half the demo requests bad, the failure-rate e-mail within 5 minutes of
# the traffic's start (measured here: about 2 min 45 s; the alert's `for` is 2 minutes).
EMAIL_WITHIN = 300.0


@pytest.mark.slow
def test_up_runs_the_whole_stack_its_bad_traffic_emails_the_alert_and_a_restart_keeps_the_traces(tmp_path):
    ports = stack_ports()
    command = up_command(sys.executable, tmp_path, ports, "--traffic-rate", "4", "--bad-share", "0.5",
                         "--duration", "600")
    up = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = read_until(up.stdout, "demo traffic: 4 requests/s, 50% of them bad", timeout=300)
        traffic_at = time.monotonic()
        # The traffic starts only once Prometheus holds the proxy's counters (at 0 until then).
        assert prometheus_value(ports.prometheus, FIRST_SCRAPE_QUERY) is not None
        output = "\n".join(lines)
        assert output.index("waiting for Prometheus to scrape the proxy's counters") < output.index("demo traffic")
        for url in (f"http://127.0.0.1:{ports.proxy}/readyz", f"http://127.0.0.1:{ports.mlflow}/ping",
                    f"http://127.0.0.1:{ports.collector_health}/", f"http://127.0.0.1:{ports.prometheus}/-/ready",
                    f"http://127.0.0.1:{ports.alertmanager}/-/ready"):
            assert http_ok(url), url
        for printed in (f"http://127.0.0.1:{ports.proxy}/predict", f"http://127.0.0.1:{ports.proxy}/metrics",
                        f"http://127.0.0.1:{ports.prometheus}", f"http://127.0.0.1:{ports.alertmanager}",
                        str(tmp_path / "mail" / "new")):
            assert printed in output, printed
        assert port_answers(ports.smtp)
        # The dashboard's address comes first; Prometheus serves its page with the chart library inline.
        url_lines = [line for line in lines if "http://" in line]
        dashboard = f"http://127.0.0.1:{ports.prometheus}/consoles/inferwatch.html"
        assert url_lines[0].split() == ["dashboard:", dashboard], url_lines
        page = requests.get(dashboard, timeout=10)
        assert page.status_code == 200 and "At a glance" in page.text, page.text[:500]
        assert "<!-- uPlot 1.6.32, inlined from npm." in page.text and "var uPlot=" in page.text
        # The trickle reaches Prometheus through the collector, successes and failures alike.
        deadline = time.monotonic() + 60
        while not ((prometheus_value(ports.prometheus, "sum(prediction_success_total)") or 0) > 0
                   and (prometheus_value(ports.prometheus, "sum(prediction_failure_total)") or 0) > 0):
            assert time.monotonic() < deadline, "the demo traffic never reached Prometheus through the collector"
            time.sleep(1)
        assert prometheus_value(ports.prometheus, 'sum(http_requests_total{job="inferwatch"})') > 0
        # The inference log: the proxy's OTLP records, written by the collector where
        # `inferwatch logs` reads them (the trickle's successes and failures alike).
        inference_log = tmp_path / "inference-log"
        assert str(inference_log) in output
        while len(records := Reader([inference_log]).read() if inference_log.exists() else []) < 30:
            assert time.monotonic() < deadline, "the demo traffic's records never reached the collector's file"
            time.sleep(1)
        assert "success" in {r["outcome"] for r in records}
        # The trace store: Jaeger's query API has the demo traffic's traces (the stack keeps them
        # all), and Prometheus stores exemplars that lead there.
        assert http_ok(f"http://127.0.0.1:{ports.jaeger_health}/status")
        assert f"http://127.0.0.1:{ports.jaeger_query}/api/traces?service=inferwatch" in output
        jaeger = JaegerQuery(f"http://127.0.0.1:{ports.jaeger_query}")
        while len(jaeger.search("inferwatch", time.time() - 600, time.time(), limit=100)) < 30:
            assert time.monotonic() < deadline + 30, "the demo traffic's traces never reached Jaeger"
            time.sleep(1)
        while not (exemplars := requests.get(
                f"http://127.0.0.1:{ports.prometheus}/api/v1/query_exemplars", timeout=5,
                params={"query": "http_request_duration_seconds_bucket", "start": time.time() - 600,
                        "end": time.time()}).json()["data"]):
            assert time.monotonic() < deadline + 60, "no exemplar reached Prometheus"
            time.sleep(1)
        trace_id = exemplars[0]["exemplars"][0]["labels"]["trace_id"]
        # Prometheus may hold the exemplar before the collector's tail sampler has decided on its trace.
        while jaeger.trace(trace_id) is None:
            assert time.monotonic() < deadline + 90, f"the exemplar's trace {trace_id} never reached Jaeger"
            time.sleep(1)
        # Half the requests bad: the failure-rate e-mail within the demo's promise.
        while not mails_about(tmp_path, "HighPredictionFailureRate"):
            assert up.poll() is None, "inferwatch up stopped"
            assert time.monotonic() < traffic_at + EMAIL_WITHIN, (
                f"no HighPredictionFailureRate e-mail {EMAIL_WITHIN:.0f} s after the traffic started")
            time.sleep(2)
        emailed_after = time.monotonic() - traffic_at
    finally:
        rest = stop(up)
    assert up.returncode == 0
    summary = "\n".join(rest)
    assert re.search(r"^sent \d+ in", summary, re.M) and "stopped" in rest, summary
    assert_nothing_left_behind(ports, tmp_path)
    assert {"mlflow.log", "proxy.log", "otelcol.log", "jaeger.log", "prometheus.log", "alertmanager.log",
            "smtp-sink.log", "prometheus-build.log", "alertmanager-build.log"} <= {p.name for p in tmp_path.iterdir()}
    print(f"\nthe failure-rate e-mail came {emailed_after:.0f} s after the demo traffic started")

    # Restarted on the same run directory: Jaeger's Badger store still has the trace that the
    # exemplar, kept by Prometheus in its own data, links to.
    up = subprocess.Popen(up_command(sys.executable, tmp_path, ports, "--traffic-rate", "0", "--duration", "120"),
                          env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        read_until(up.stdout, "running; Ctrl-C stops the stack", timeout=240)
        stored = requests.get(f"http://127.0.0.1:{ports.prometheus}/api/v1/query_exemplars", timeout=5,
                              params={"query": "http_request_duration_seconds_bucket", "start": time.time() - 900,
                                      "end": time.time()}).json()["data"]
        assert trace_id in {e["labels"]["trace_id"] for series in stored for e in series["exemplars"]}
        assert jaeger.trace(trace_id) is not None, f"trace {trace_id} did not survive the restart"
    finally:
        stop(up)
    assert up.returncode == 0


def test_up_says_which_port_is_taken_before_starting_anything(tmp_path, proxy):
    finished = subprocess.run(
        [sys.executable, "-m", "inferwatch", "up", "--run-dir", str(tmp_path), "--proxy-port", str(proxy.port),
         "--duration", "1"],
        env=child_env(), capture_output=True, text=True, timeout=60,
    )
    assert finished.returncode == 1
    assert f"port {proxy.port} for proxy is taken; choose another with --proxy-port" in finished.stderr
    assert not (tmp_path / "mlflow.log").exists()


def test_up_says_how_to_get_a_missing_tool(tmp_path):
    env = child_env()
    env["PATH"] = str(Path(sys.executable).parent) + ":/nonexistent"  # mlflow only: no go, no npm
    finished = subprocess.run(up_command(sys.executable, tmp_path, stack_ports(), "--duration", "1"),
                              env=env, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert "go not found on PATH: install Go >= 1.26" in finished.stderr, finished.stderr
    assert not (tmp_path / "mlflow.log").exists()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """inferwatch installed from a wheel into a fresh virtualenv (no checkout on its path): the
    wheel is built from this checkout by its build hook, its dependencies are the project
    environment's, read through a .pth file rather than downloaded again. Returns the venv."""
    work = tmp_path_factory.mktemp("pip-install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "dist"), str(ROOT)], check=True, timeout=300,
                   cwd=work, env=child_env(PIP_NO_INPUT="1"))
    [wheel] = (work / "dist").glob("inferwatch-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # Without PYTHONPATH: pip would take the checkout's service/ (and the egg-info the wheel
    # build left there) for an installed inferwatch, and install nothing.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=300, cwd=work,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    [site] = (venv / "lib").glob("python*/site-packages")
    [project_site] = (Path(sys.executable).parent.parent / "lib").glob("python*/site-packages")
    (site / "project-dependencies.pth").write_text(f"{project_site}\n")
    # The dependencies' commands (uwsgi, which the proxy execs beside its Python; mlflow, which
    # execs uvicorn), written as pip writes console scripts: this venv's Python runs them.
    for dist in importlib.metadata.distributions(path=[str(project_site)]):
        for entry in dist.entry_points.select(group="console_scripts"):
            module, _, function = entry.value.partition(":")
            script = venv / "bin" / entry.name
            script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {function.split('.')[0]}\n"
                              f"sys.exit({function}())\n")
            script.chmod(0o755)
    return venv


def outside_env(venv: Path) -> dict[str, str]:
    """No PYTHONPATH (the tests put this checkout's service/ there) and no project environment on
    PATH: only the venv's commands, and the system's (go, npm)."""
    env = {k: v for k, v in child_env().items() if k != "PYTHONPATH"}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *(part for part in env["PATH"].split(os.pathsep)
                                                         if part != str(Path(sys.executable).parent))])
    return env


@pytest.mark.slow
def test_up_runs_from_a_pip_install_with_the_files_the_package_carries(installed, tmp_path):
    python = str(installed / "bin" / "python")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import inferwatch.stack.files as f; print(f.stack_root())"],
                           env=outside_env(installed), cwd=elsewhere, capture_output=True, text=True, check=True)
    packaged = Path(where.stdout.strip())
    assert packaged.is_relative_to(installed) and packaged.name == "files", packaged
    assert not ROOT.is_relative_to(elsewhere) and not elsewhere.is_relative_to(ROOT)
    ports, run_dir = stack_ports(), tmp_path / "run"
    up = subprocess.Popen(up_command(python, run_dir, ports, "--traffic-rate", "0", "--duration", "240"),
                          env=outside_env(installed), cwd=elsewhere, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        read_until(up.stdout, "running; Ctrl-C stops the stack", timeout=300)
        # Every component runs with the package's files: configs, console pages, build scripts'
        # products from the same caches as the checkout's.
        commands = [" ".join(child.cmdline()) for child in psutil.Process(up.pid).children(recursive=True)]
        for expected in (f"--web.console.templates={packaged}/observability/prometheus/consoles",
                         f"--config {packaged}/otel-collector/config.yaml",
                         f"--config {packaged}/observability/jaeger/badger.yaml"):
            assert any(expected in command for command in commands), (expected, commands)
        assert str(ROOT) not in "\n".join(commands), commands
        page = requests.get(f"http://127.0.0.1:{ports.prometheus}/consoles/inferwatch.html", timeout=10)
        assert page.status_code == 200 and "var uPlot=" in page.text
        answer = requests.post(f"http://127.0.0.1:{ports.proxy}/predict", json=SEED_EXAMPLE, timeout=30)
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60
        while prometheus_value(ports.prometheus, "sum(prediction_success_total)") != 1:
            assert time.monotonic() < deadline, "the prediction never reached Prometheus"
            time.sleep(1)
    finally:
        stop(up)
    assert up.returncode == 0
    assert_nothing_left_behind(ports, run_dir)


def test_the_service_images_source_tree_builds_a_wheel_without_the_stack_files(tmp_path):
    """service/Dockerfile copies only some files before `pip install .`: the build hook must build
    that tree (a package that serves and does not run `inferwatch up`), not fail on the files
    it lacks."""
    dockerfile = (ROOT / "service" / "Dockerfile").read_text()
    tree = tmp_path / "src"
    for sources, target in re.findall(r"^COPY (?!--)(.+) (\S+)$", dockerfile, re.M):
        for source in sources.split():
            destination = tree / (source if target.endswith("/") else target)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, destination)
    assert {path.name for path in tree.iterdir()} == {"pyproject.toml", "requirements.lock", "README.md", "service"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "dist"), str(tree)], check=True, timeout=300, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("inferwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "inferwatch/proxy/app.py" in names and "inferwatch/stack/files.py" in names
    assert not [name for name in names if "/stack/files/" in name]
