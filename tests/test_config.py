"""Settings: flag beats environment beats default; a bad value names its variable."""

import os

import pytest

from inferwatch.cli import main
from inferwatch.proxy.config import ConfigError, Settings, load_settings


def test_defaults_match_the_seed():
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert settings.upstream == "http://127.0.0.1:5005"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_flag_beats_environment_beats_default():
    environ = {"INFERWATCH_PORT": "9001", "INFERWATCH_READ_TIMEOUT": "3.5"}
    settings = load_settings({"port": "9002", "read_timeout": None}, environ=environ)
    assert settings.port == 9002
    assert settings.read_timeout == 3.5
    assert settings.connect_timeout == Settings().connect_timeout


@pytest.mark.parametrize(
    "variable, value",
    [
        ("INFERWATCH_PORT", "eighty"),
        ("INFERWATCH_PORT", "70000"),
        ("INFERWATCH_READ_TIMEOUT", "0"),
        ("INFERWATCH_UPSTREAM", "ftp://model"),
        ("INFERWATCH_LOG_LEVEL", "chatty"),
        ("INFERWATCH_MAX_BODY_BYTES", "-1"),
        ("INFERWATCH_MODEL_DIR", "/no/such/model"),
        ("INFERWATCH_MODEL_URI", "models:/diabetes/3"),
        ("INFERWATCH_MODEL_URI", "s3://bucket/model"),
        ("INFERWATCH_MODEL_PROFILE", "/no/such/profile.json"),
        ("INFERWATCH_MODEL_QUALITY", "maybe"),
        ("INFERWATCH_FEEDBACK_MAX_ROWS", "0"),
        ("INFERWATCH_FEEDBACK_KEY_FILE", "/no/such/key"),
        ("INFERWATCH_PAYLOAD_LOG_SAMPLE", "1.5"),
        ("INFERWATCH_PAYLOAD_LOG_SAMPLE", "a tenth"),
        ("INFERWATCH_PAYLOAD_LOG_DIR", "/proc/self/status/log"),
        ("INFERWATCH_PAYLOAD_LOG_REDACT", "email:scramble"),
        ("INFERWATCH_PAYLOAD_LOG_REDACT", "email:hash"),  # hashing without a key
        ("INFERWATCH_PAYLOAD_LOG_MASK", "phone"),
        ("INFERWATCH_PAYLOAD_LOG_OTLP", "true"),  # no OTLP endpoint
        ("INFERWATCH_PAYLOAD_LOG_FILE_BYTES", "0"),
        ("INFERWATCH_PAYLOAD_LOG_QUEUE", "-5"),
        ("INFERWATCH_BODY_TIMEOUT", "0"),
        ("INFERWATCH_BODY_THREADS", "0"),
    ],
)
def test_a_bad_value_fails_at_start_naming_the_variable(variable, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ={variable: value})
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_the_command_refuses_a_bad_flag_with_exit_code_2(capsys):
    assert main(["serve", "--port", "x"]) == 2
    assert "--port" in capsys.readouterr().err


def test_the_inference_log_settings_are_normalised_and_survive_the_trip_through_the_environment(tmp_path):
    key = tmp_path / "key"
    key.write_text("secret")
    flags = {"payload_log_dir": str(tmp_path / "new" / "log"), "payload_log_redact": " Email , ssn:HASH,notes:drop ",
             "payload_log_mask": "Digits", "payload_log_key_file": str(key), "payload_log_sample": "0.25"}
    settings = load_settings(flags, environ={})
    assert settings.payload_log and not settings.payload_log_otlp
    assert settings.payload_log_redact == "Email:drop,ssn:hash,notes:drop"
    assert settings.payload_log_mask == "digits"
    # inferwatch serve hands the settings to the workers as INFERWATCH_* text (proxy.server.serve)
    environ = {f"INFERWATCH_{name.upper()}": str(value) for name, value in vars(settings).items()}
    assert load_settings({}, environ=environ) == settings
    assert load_settings({"payload_log_mask": "none"}, environ={}).payload_log_mask == "none"
    assert not load_settings({}, environ={}).payload_log


def test_upstream_trailing_slash_is_normalised():
    assert load_settings({}, environ={"INFERWATCH_UPSTREAM": "http://m:1/"}).invocations_url == "http://m:1/invocations"


def test_the_router_waits_longer_for_the_worker_than_the_worker_may_take():
    from inferwatch.proxy.server import router_timeouts, uwsgi_command

    settings = load_settings({"client_timeout": "2.5", "keepalive_timeout": "60"}, environ={})
    timeouts = router_timeouts(settings)
    assert (timeouts.headers, timeouts.keepalive) == (3, 60)  # uWSGI takes whole seconds: rounded up
    # A request may spend the body's silence, the connect and the model's read in the worker.
    assert timeouts.exchange > settings.client_timeout + settings.connect_timeout + settings.read_timeout
    command = uwsgi_command(settings, "/run/inferwatch-x", [3])
    assert command[command.index("--http-timeout") + 1] == str(timeouts.exchange)
    assert "--http11-socket" not in command and "--post-buffering" not in command
    # A body may take body_timeout (30 s by default), more than the client timeout, before the model call.
    assert timeouts.exchange > settings.body_timeout + settings.connect_timeout + settings.read_timeout


def test_the_router_listens_on_the_sockets_it_is_given_with_threads_kept_for_slow_bodies():
    from inferwatch.proxy.server import http_addresses, uwsgi_command

    settings = load_settings({"threads": "8", "body_threads": "40", "metrics_port": "9464"}, environ={})
    assert http_addresses(settings) == [("127.0.0.1", 8000), ("127.0.0.1", 9464)]
    command = uwsgi_command(settings, "/run/inferwatch-x", [3, 4])
    assert [command[i + 1] for i, part in enumerate(command) if part == "--http"] == ["fd://3", "fd://4"]
    assert command[command.index("--threads") + 1] == "48"


def test_connections_accepted_on_the_listening_socket_have_tcp_nodelay():
    """The router sets no TCP_NODELAY on the connections it accepts; Linux copies it from the listener."""
    import socket

    from inferwatch.proxy.server import listening_socket

    with listening_socket("127.0.0.1", 0, 1) as listener:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert listener.get_inheritable()
        with socket.create_connection(listener.getsockname()[:2]) as client:
            client.sendall(b"x")  # TCP_DEFER_ACCEPT: a connection is accepted once it has sent something
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert accepted.recv(1) == b"x"


def test_a_socket_directory_left_by_a_killed_proxy_is_removed_at_the_next_start(tmp_path):
    import subprocess
    import sys

    from inferwatch.proxy.server import SOCKET_DIR_PREFIX, socket_dir

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)  # a process that has exited
    stale = tmp_path / f"{SOCKET_DIR_PREFIX}{dead_pid}-abc"
    stale.mkdir()
    (stale / "app.sock").touch()
    alive = tmp_path / f"{SOCKET_DIR_PREFIX}1-def"  # pid 1 is always running
    alive.mkdir()
    fresh = socket_dir(str(tmp_path))
    assert not stale.exists() and alive.exists()
    assert fresh.startswith(str(tmp_path / SOCKET_DIR_PREFIX)) and (oct(os.stat(fresh).st_mode)[-3:] == "700")


def test_a_model_is_given_by_its_directory_or_a_file_uri_not_both(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert load_settings({"model_uri": f"file://{tmp_path}"}, environ={}).model_uri == str(tmp_path)
    assert load_settings({}, environ={"INFERWATCH_MODEL_QUALITY": "false"}).model_quality is False
    with pytest.raises(ConfigError) as caught:
        load_settings({"model_dir": str(tmp_path), "model_uri": str(tmp_path)}, environ={})
    assert "not both" in str(caught.value)


def test_every_setting_declares_its_help_and_the_help_lists_each_with_its_variable(capsys):
    import dataclasses

    from inferwatch.proxy.config import HELP, PARSE, env_name, flag_name

    fields = dataclasses.fields(Settings)
    assert all(field.metadata[HELP] and callable(field.metadata[PARSE]) for field in fields)
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in fields:
        assert flag_name(field.name) in text and env_name(field.name) in text, field.name
