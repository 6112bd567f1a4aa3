"""``python -m inferwatch.render``: one command checks or rewrites every generated committed file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from alerting_stack import REPO
from inferwatch.render import collector, committed, grafana, kubernetes, prometheus_rules, settings


def rendered_copy(root: Path) -> None:
    """Every generated file written under ``root`` (the generated blocks need their files there)."""
    for block_file in (collector.COLLECTOR_CONFIG, settings.CONFIGURATION_DOC):
        (root / block_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / block_file, root / block_file)
    assert committed.main(["--write", "--root", str(root)]) == 0


def test_the_check_command_passes_on_the_committed_files():
    result = subprocess.run([sys.executable, "-m", "inferwatch.render", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_check_command_names_a_rule_file_that_differs(tmp_path):
    rendered_copy(tmp_path)
    (tmp_path / prometheus_rules.RULES_DIR / "host.yml").write_text("groups: []\n")
    assert committed.stale_files(tmp_path) == [tmp_path / prometheus_rules.RULES_DIR / "host.yml"]
    assert committed.main(["--check", "--root", str(tmp_path)]) == 1


def test_the_check_command_names_a_grafana_file_that_differs(tmp_path):
    rendered_copy(tmp_path)
    stale = tmp_path / grafana.ALERT_RULES_FILE
    stale.write_text(stale.read_text().replace("- 80", "- 90"))
    assert committed.stale_files(tmp_path) == [stale]
    assert committed.main(["--check", "--root", str(tmp_path)]) == 1


def test_the_check_command_names_the_collector_config_when_its_generated_block_differs(tmp_path):
    rendered_copy(tmp_path)
    config = tmp_path / collector.COLLECTOR_CONFIG
    config.write_text(config.read_text().replace('scale_metric(100.0)', 'scale_metric(10.0)', 1))
    assert committed.stale_files(tmp_path) == [config]
    assert committed.main(["--check", "--root", str(tmp_path)]) == 1


def test_every_renderer_writes_only_files_under_the_root(tmp_path):
    rendered_copy(tmp_path)
    for path in committed.committed_files(tmp_path):
        assert path.is_relative_to(tmp_path) and path.is_file()


def test_the_check_command_names_the_helm_charts_copy_of_a_rule_file_that_differs(tmp_path):
    rendered_copy(tmp_path)
    stale = tmp_path / kubernetes.CHART_FILES / "prometheus-rules" / "host.yml"
    stale.write_text(stale.read_text().replace("> 80", "> 90"))
    assert committed.stale_files(tmp_path) == [stale]
    assert committed.main(["--check", "--root", str(tmp_path)]) == 1


def test_the_helm_chart_holds_a_copy_of_every_rule_file_dashboard_and_the_collector_config(tmp_path):
    rendered_copy(tmp_path)
    rendered = committed.committed_files(tmp_path)
    copied = {path.relative_to(tmp_path) for path in rendered if path.is_relative_to(tmp_path / kubernetes.CHART_DIR)}
    sources = {path.relative_to(tmp_path) for path in rendered
               if path.parent in (tmp_path / prometheus_rules.RULES_DIR, tmp_path / grafana.DASHBOARD_FILE.parent)
               or path == tmp_path / collector.COLLECTOR_CONFIG}
    assert copied == {kubernetes.chart_path(source) for source in sources}
    assert all(rendered[tmp_path / kubernetes.chart_path(source)] == rendered[tmp_path / source] for source in sources)
