"""Security: /metrics access, what the proxy forwards, bounded cardinality, no committed secrets."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import time

import pytest
import requests

from inferwatch.proxy.config import ConfigError, load_settings
from inferwatch.stack.demo_model import SEED_EXAMPLE
from inferwatch.stack.processes import free_port
from support import ROOT, child_env, parse_samples, total
from test_traces import HeaderRecordingRelay


def test_metrics_on_a_port_of_its_own_behind_a_bearer_token(mlflow_server, start_proxy, tmp_path):
    token_file = tmp_path / "metrics-token"
    token_file.write_text("s3cret-scrape-token\n")
    metrics_port = free_port()
    proxy = start_proxy(mlflow_server.url, metrics_port=metrics_port, metrics_token_file=token_file)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert proxy.post(json=SEED_EXAMPLE).status_code == 200

    assert requests.get(proxy.url + "/metrics", timeout=5).status_code == 404  # not on the main port
    refused = requests.get(metrics_url, timeout=5)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert refused.json()["error"]["code"] == "unauthorized"
    assert requests.get(metrics_url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
    scraped = requests.get(metrics_url, headers={"Authorization": "Bearer s3cret-scrape-token"}, timeout=5)
    assert scraped.status_code == 200
    samples = parse_samples(scraped.text)
    assert total(samples, "prediction_success_total") == 1
    assert total(samples, "http_requests_total") == 2  # the prediction and the 404 for /metrics
    # The metrics port serves nothing else.
    assert requests.post(f"http://127.0.0.1:{metrics_port}/predict", json=SEED_EXAMPLE, timeout=5).status_code == 404
    assert requests.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).status_code == 200


def test_a_missing_or_empty_token_file_stops_the_start(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (tmp_path / "missing", empty):
        with pytest.raises(ConfigError) as caught:
            load_settings({}, environ={"INFERWATCH_METRICS_TOKEN_FILE": str(path)})
        assert caught.value.variable == "INFERWATCH_METRICS_TOKEN_FILE"
    finished = subprocess.run([sys.executable, "-m", "inferwatch", "serve", "--metrics-token-file", str(empty)],
                              env=child_env(), capture_output=True, text=True, timeout=30)
    assert finished.returncode == 2 and "--metrics-token-file" in finished.stderr


HOSTILE_HEADERS = {
    "Connection": "keep-alive, X-Secret-Hop",
    "X-Secret-Hop": "must-not-pass",
    "Keep-Alive": "timeout=5",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "Authorization": "Bearer client-credential",
    "Cookie": "session=client",
    "Forwarded": "for=6.6.6.6;host=evil.example",
    "X-Forwarded-For": "6.6.6.6",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "https",
    "X-Real-IP": "6.6.6.6",
    "Upgrade": "websocket",
    "TE": "trailers",
}


def test_client_headers_never_reach_the_model_server_and_the_client_cannot_choose_it(mlflow_server, start_proxy):
    relay = HeaderRecordingRelay(mlflow_server.url)
    try:
        proxy = start_proxy(relay.url)
        assert proxy.post(json=SEED_EXAMPLE, headers=HOSTILE_HEADERS).status_code == 200
        # An absolute-form request target and a foreign Host still go to the configured upstream.
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw:
            body = requests.models.complexjson.dumps(SEED_EXAMPLE).encode()
            raw.sendall(b"POST http://169.254.169.254/invocations HTTP/1.1\r\nHost: 169.254.169.254\r\n"
                        b"Content-Type: application/json\r\nConnection: close\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.1 200 OK", b"HTTP/1.1 404 NOT FOUND")
    finally:
        relay.shutdown()
        relay.server_close()
    assert relay.seen, "the relay saw no request"
    for headers in relay.seen:
        forwarded = set(headers)
        assert forwarded.isdisjoint(name.lower() for name in HOSTILE_HEADERS if name != "Connection"), forwarded
        assert headers["connection"] == "keep-alive"  # the proxy's own, not the client's list
        assert headers["host"] == relay.url.removeprefix("http://")
        assert forwarded <= {"host", "content-type", "content-length", "accept", "accept-encoding",
                             "connection", "user-agent", "traceparent", "tracestate", "baggage"}


def test_random_paths_and_methods_add_a_bounded_number_of_series(proxy):
    rng = random.Random(1)
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "BREW", "X" * 40]
    session = requests.Session()
    deadline = time.monotonic() + 60
    sent = 0
    while sent < 2000 and time.monotonic() < deadline:
        path = "/" + "/".join(rng.choice(["a", "b", "admin", "..", "%2e", "wp-login.php", str(sent)])
                              for _ in range(rng.randint(1, 4)))
        session.request(rng.choice(methods), proxy.url + path, timeout=10)
        sent += 1
    session.close()
    assert sent == 2000, "the loop ran out of time"
    text = proxy.metrics_text()
    series = {line.split(" ")[0] for line in text.splitlines() if line.startswith("http_requests_total{")}
    assert total(parse_samples(text), "http_requests_total") == sent
    # route is always "unmatched"; methods collapse to the known ones plus _OTHER; statuses are few.
    routes = set(re.findall(r'route="([^"]*)"', "\n".join(series)))
    methods_seen = set(re.findall(r'method="([^"]*)"', "\n".join(series)))
    assert routes == {"unmatched"}
    assert methods_seen <= {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "_OTHER"}
    assert len(series) <= 16, series


# Files a user deploys with: none may hold a password, key or default credential.
DEPLOYED = ["docker-compose.yml", ".env.example", "observability", "otel-collector", "service/Dockerfile"]
CREDENTIAL = re.compile(
    r"""(?ix)
    (password|passwd|secret|api[_-]?key|token|auth_password)["']?\s*[:=]\s*["']?(?P<value>[^\s"'#,}]+)
    """
)
# Not a value: a reference (${VAR}, a secrets path, a template), a literal, or an object that
# opens on this line ("metricsToken": {) and whose fields are checked on their own lines.
ALLOWED_VALUES = re.compile(r"^(\$\{?[A-Z_]+|\$__(env|file)\{|/run/secrets/|<|\{\{|\{$|true|false|null|''|\"\")", re.I)


def deployed_files():
    for entry in DEPLOYED:
        path = ROOT / entry
        yield from (p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())


def test_no_credential_is_committed_in_what_users_deploy():
    found = []
    for path in deployed_files():
        if path.suffix in (".png", ".jsonl") or path.name.endswith("_test.yml"):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for match in CREDENTIAL.finditer(line):
                value = match.group("value")
                if value and not ALLOWED_VALUES.match(value) and not value.endswith("_FILE"):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_grafana_never_falls_back_to_admin_admin():
    texts = {
        path: "\n".join(line for line in path.read_text(errors="replace").splitlines()
                        if not line.lstrip().startswith(("#", ";")))
        for path in deployed_files()
    }
    for path, text in texts.items():
        assert not re.search(r"admin[_ ]?password\s*[:=]\s*admin\b", text, re.I), path
        assert "admin:admin" not in text and "admin/admin" not in text, path
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "GRAFANA_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:?" in compose  # required, no default
    grafana_ini = (ROOT / "observability" / "grafana" / "grafana.ini").read_text()
    assert re.search(r"^admin_password = \$__env\{GRAFANA_ADMIN_PASSWORD\}$", grafana_ini, re.M)
