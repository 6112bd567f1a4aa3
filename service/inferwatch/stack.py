"""``inferwatch up``: the demo stack as native processes, for machines without Docker.

It trains the demo model (once per run directory), starts the MLflow model server and the proxy
in dependency order with readiness waits, sends a little demo traffic, prints the URLs, and stops
everything on Ctrl-C or SIGTERM. Logs go to the run directory, one file per component.
"""

from __future__ import annotations

import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from inferwatch.demo_model import save_demo_model
from inferwatch.load import LoadPlan, run_load
from inferwatch.processes import ManagedProcess, ProcessFailed, mlflow_serve_command


class StackError(RuntimeError):
    """The stack cannot start; the message says what to do."""


@dataclass(frozen=True)
class StackPorts:
    proxy: int = 8000
    mlflow: int = 5005


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def _require(binary: str, hint: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise StackError(f"{binary} not found on PATH: {hint}")
    return path


class Stack:
    def __init__(self, run_dir: Path, ports: StackPorts):
        self.run_dir = run_dir
        self.ports = ports
        self.processes: list[ManagedProcess] = []

    def start(self) -> None:
        for name, port in (("proxy", self.ports.proxy), ("MLflow", self.ports.mlflow)):
            if not _port_is_free(port):
                raise StackError(f"port {port} for the {name} is taken; choose another with --{name.lower()}-port")
        venv_bin = str(Path(sys.executable).parent)
        _require("mlflow", "install the project with scripts/bootstrap.sh")
        model_dir = self.run_dir / "demo-model"
        if not (model_dir / "MLmodel").exists():
            save_demo_model(model_dir)
        env = {"PATH": venv_bin + ":" + "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
        mlflow = self._spawn("mlflow", mlflow_serve_command(model_dir, self.ports.mlflow), env)
        mlflow.wait_ready(f"http://127.0.0.1:{self.ports.mlflow}/ping", timeout=120)
        proxy_env = dict(env, INFERWATCH_UPSTREAM=f"http://127.0.0.1:{self.ports.mlflow}",
                         INFERWATCH_PORT=str(self.ports.proxy))
        proxy = self._spawn("proxy", [sys.executable, "-m", "inferwatch", "serve"], proxy_env)
        proxy.wait_ready(f"http://127.0.0.1:{self.ports.proxy}/readyz", timeout=30)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> ManagedProcess:
        import os

        full_env = dict(os.environ, **env)
        process = ManagedProcess(name, command, self.run_dir / f"{name}.log", env=full_env).start()
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def urls(self) -> dict[str, str]:
        proxy = f"http://127.0.0.1:{self.ports.proxy}"
        return {
            "proxy": proxy + "/predict",
            "metrics": proxy + "/metrics",
            "mlflow": f"http://127.0.0.1:{self.ports.mlflow}/invocations",
            "logs": str(self.run_dir),
        }


def up(run_dir: Path, ports: StackPorts, traffic: int, duration: float | None) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(run_dir, ports)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stack.start()
        for name, url in stack.urls().items():
            print(f"{name:>8}: {url}", flush=True)
        if traffic:
            plan = LoadPlan(f"http://127.0.0.1:{ports.proxy}", count=traffic, concurrency=2)
            print(run_load(plan, progress=lambda *_: None).summary(), flush=True)
        print("running; Ctrl-C stops the stack", flush=True)
        deadline = None if duration is None else time.monotonic() + duration
        while not stopped.wait(0.5):
            if deadline is not None and time.monotonic() > deadline:
                break
            for process in stack.processes:
                if not process.running:
                    raise ProcessFailed(process.name, "exited unexpectedly", process.log_tail())
    except KeyboardInterrupt:
        pass
    except (StackError, ProcessFailed) as error:
        print(f"inferwatch up: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        print("stopped", flush=True)
    return 0
