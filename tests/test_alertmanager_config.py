"""The Alertmanager configuration: the seed's route, SMTP settings from the environment, valid for amtool."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest
import yaml

from alerting_stack import ALERTMANAGER_DIR, REPO, tool
from inferwatch.render.alertmanager import SettingError, SmtpSettings, render_alertmanager_config, write_alertmanager_config

COMMITTED = ALERTMANAGER_DIR / "alertmanager.yml"
TEMPLATES = ALERTMANAGER_DIR / "templates"
REAL_SMTP_ENV = {
    "INFERWATCH_SMTP_SMARTHOST": "smtp.example.com:587",
    "INFERWATCH_SMTP_FROM": "alerts@example.com",
    "INFERWATCH_ALERT_EMAIL_TO": "oncall@example.com, ml@example.com",
    "INFERWATCH_SMTP_USERNAME": "alerts@example.com",
}


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("amtool"), *args], capture_output=True, text=True, timeout=60)


def test_the_committed_config_is_the_development_rendering():
    assert COMMITTED.read_text() == render_alertmanager_config(), (
        "alertmanager.yml differs: run python -m inferwatch.render --write")


def test_amtool_accepts_the_committed_config_and_its_templates():
    result = amtool("check-config", str(COMMITTED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def test_the_route_groups_by_alert_name_and_model_with_the_seeds_timings_and_sends_resolved():
    config = yaml.safe_load(COMMITTED.read_text())
    route = config["route"]
    assert route["group_by"] == ["alertname", "job", "model", "model_version"]  # one email per alert and model
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert route["receiver"] == "email" and set(receivers) == {"email", "page", "ticket"}
    for receiver in receivers.values():  # page and ticket (the SLO alerts) are email too, alike
        [email] = receiver["email_configs"]
        assert email["send_resolved"] is True
        assert "inferwatch.email.subject" in email["headers"]["Subject"]


def test_a_config_rendered_from_the_environment_passes_amtool_and_holds_no_password(tmp_path):
    env = {**REAL_SMTP_ENV, "INFERWATCH_SMTP_PASSWORD": "s3cret: with 'quotes'"}
    config_path = write_alertmanager_config(tmp_path / "am" / "alertmanager.yml", env, TEMPLATES)
    text = config_path.read_text()
    assert "s3cret" not in text
    password_file = tmp_path / "am" / "smtp_password"
    assert password_file.read_text() == env["INFERWATCH_SMTP_PASSWORD"]  # no newline added
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    smtp = yaml.safe_load(text)["global"]
    assert smtp == {
        "smtp_smarthost": "smtp.example.com:587",
        "smtp_from": "alerts@example.com",
        "smtp_require_tls": True,  # a login never goes out unencrypted unless asked to
        "smtp_auth_username": "alerts@example.com",
        "smtp_auth_password_file": str(password_file.resolve()),
    }
    result = amtool("check-config", str(config_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_password_file_is_referenced_where_it_is(tmp_path):
    secret = tmp_path / "secrets" / "smtp_password"
    secret.parent.mkdir()
    secret.write_text("hunter2")
    settings = SmtpSettings.from_env({**REAL_SMTP_ENV, "INFERWATCH_SMTP_PASSWORD_FILE": str(secret)})
    assert settings.password_file == str(secret.resolve())
    assert not (tmp_path / "smtp_password").exists()


def test_without_a_user_mail_goes_unauthenticated_and_without_tls_by_default():
    settings = SmtpSettings.from_env({"INFERWATCH_SMTP_SMARTHOST": "relay.internal:25"})
    assert (settings.username, settings.password_file, settings.require_tls) == ("", "", False)
    assert "smtp_auth" not in render_alertmanager_config(settings)


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"INFERWATCH_SMTP_USERNAME": "me"}, "INFERWATCH_SMTP_PASSWORD_FILE"),
        ({"INFERWATCH_SMTP_USERNAME": "me", "INFERWATCH_SMTP_PASSWORD": "a",
          "INFERWATCH_SMTP_PASSWORD_FILE": "/x"}, "INFERWATCH_SMTP_PASSWORD"),
        ({"INFERWATCH_SMTP_PASSWORD": "a"}, "INFERWATCH_SMTP_USERNAME"),
        ({"INFERWATCH_SMTP_SMARTHOST": "smtp.example.com"}, "INFERWATCH_SMTP_SMARTHOST"),
        ({"INFERWATCH_SMTP_REQUIRE_TLS": "maybe"}, "INFERWATCH_SMTP_REQUIRE_TLS"),
        ({"INFERWATCH_SMTP_FROM": " "}, "INFERWATCH_SMTP_FROM"),
    ],
    ids=["user-without-password", "password-twice", "password-without-user", "no-port", "tls-not-bool", "empty-from"],
)
def test_a_bad_setting_fails_naming_its_variable(env, variable, tmp_path):
    with pytest.raises(SettingError) as error:
        SmtpSettings.from_env(env, password_dir=tmp_path)
    assert error.value.variable == variable
    assert str(error.value).startswith(variable)


def test_a_password_file_ending_in_a_newline_is_refused(tmp_path):
    secret = tmp_path / "smtp_password"
    secret.write_text("hunter2\n")
    with pytest.raises(SettingError) as error:
        SmtpSettings.from_env({**REAL_SMTP_ENV, "INFERWATCH_SMTP_PASSWORD_FILE": str(secret)})
    assert error.value.variable == "INFERWATCH_SMTP_PASSWORD_FILE" and "printf" in str(error.value)


def test_the_command_renders_from_the_environment_and_reports_a_bad_setting(tmp_path):
    out = tmp_path / "alertmanager.yml"
    command = [sys.executable, "-m", "inferwatch.render", "--alertmanager-config", str(out)]
    ok = subprocess.run(command, cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "service"), **REAL_SMTP_ENV,
                                                "INFERWATCH_SMTP_PASSWORD": "pw"},
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert amtool("check-config", str(out)).returncode == 0
    bad = subprocess.run(command, cwd=REPO, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "service"), "INFERWATCH_SMTP_USERNAME": "me"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "INFERWATCH_SMTP_PASSWORD_FILE" in bad.stderr


def render_email(tmp_path, part: str, group_labels: dict, kind: str = "text") -> str:
    """One part of the email amtool renders for one firing alert with ``group_labels``."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps({
        "receiver": "email", "status": "firing",
        "groupLabels": group_labels,
        "commonLabels": group_labels,
        "commonAnnotations": {"summary": "Prediction failure rate above 10%"},
        "alerts": [{
            "status": "firing",
            "labels": {**group_labels, "severity": "critical", "component": "prediction"},
            "annotations": {"summary": "Prediction failure rate above 10%", "value": "66.67%",
                            "description": "66.67% of predictions (fraud-model) failed over the last 5m"},
            "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
        }],
    }))
    result = amtool("template", "render", f"--template.glob={TEMPLATES}/*.tmpl", f"--template.type={kind}",
                    f"--template.data={data}", f'--template.text={{{{ template "inferwatch.email.{part}" . }}}}')
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_email_names_the_alert_and_the_model_in_the_subject_and_shows_summary_and_value(tmp_path):
    group = {"alertname": "HighPredictionFailureRate", "job": "fraud-model"}
    assert render_email(tmp_path, "subject", group).strip() == (
        "[FIRING:1] HighPredictionFailureRate (fraud-model): Prediction failure rate above 10%")
    text = render_email(tmp_path, "text", group)
    assert "Summary:     Prediction failure rate above 10%\nValue:       66.67%\n" in text
    assert "job=fraud-model" in text and "(fraud-model) failed" in text
    assert "<b>66.67%</b>" in render_email(tmp_path, "html", group, "html")


def test_an_alert_without_a_model_has_a_subject_without_one(tmp_path):
    """InferwatchMetricsAbsent when there is no inferwatch series at all has no job label."""
    group = {"alertname": "InferwatchMetricsAbsent"}
    assert render_email(tmp_path, "subject", group).strip() == (
        "[FIRING:1] InferwatchMetricsAbsent: Prediction failure rate above 10%")
