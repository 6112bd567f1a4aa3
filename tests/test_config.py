"""Settings: flag beats environment beats default; a bad value names its variable."""

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


def test_upstream_trailing_slash_is_normalised():
    assert load_settings({}, environ={"INFERWATCH_UPSTREAM": "http://m:1/"}).invocations_url == "http://m:1/invocations"


def test_a_model_is_given_by_its_directory_or_a_file_uri_not_both(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert load_settings({"model_uri": f"file://{tmp_path}"}, environ={}).model_uri == str(tmp_path)
    assert load_settings({}, environ={"INFERWATCH_MODEL_QUALITY": "false"}).model_quality is False
    with pytest.raises(ConfigError) as caught:
        load_settings({"model_dir": str(tmp_path), "model_uri": str(tmp_path)}, environ={})
    assert "not both" in str(caught.value)
