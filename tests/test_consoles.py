"""The console pages are the Grafana dashboard's panels: same queries, thresholds, places.

``observability/prometheus/consoles/`` is rendered from the same panel model as the Grafana
dashboard (``inferwatch.render.panels``). Read back from the committed files, every panel of the
committed dashboard JSON is on exactly one page, in its row, with its width, and queries exactly
its Grafana panel's queries (the pages substitute Grafana's variables in the browser, so the
strings are equal before substitution; tests/test_dashboard_browser.py checks what the browser
ran after it); its threshold lines are the Grafana panel's threshold steps. The pages need
nothing of Prometheus 2.x (no console library of its own, no /classic file) but the chart
library the native stack writes as a console library from the npm package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from alerting_stack import REPO
from dashboard_queries import query_panels
from inferwatch.render import consoles, grafana, panels
from inferwatch.stack.processes import install_chart_library

SPECS = re.compile(r"^Inferwatch\.start\((\[.*?\])\);$", re.M | re.S)
SUBSTITUTIONS = re.compile(r"^  var substitutions = (\[.*\]);$", re.M)


def committed_pages() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((REPO / consoles.CONSOLES_DIR).glob("*.html"))}


def committed_library() -> str:
    return (REPO / consoles.CONSOLE_LIBRARIES_DIR / consoles.DASHBOARD_LIBRARY_FILE).read_text()


def specs() -> dict[str, tuple[str, dict]]:
    """{panel id: (page, what its script draws)} from the committed pages."""
    found = {}
    for name, text in committed_pages().items():
        [raw] = SPECS.findall(text)
        for spec in json.loads(raw):
            assert spec["id"] not in found, spec["id"]
            found[spec["id"]] = (name, spec)
    return found


def dashboard() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def test_the_committed_pages_are_the_rendering_one_per_row():
    assert committed_pages() == consoles.pages()
    assert committed_library() == consoles.dashboard_library()
    assert list(consoles.pages())[0] == "inferwatch.html"
    assert len(consoles.pages()) == len(panels.board().rows)


def test_every_grafana_panel_is_drawn_once_with_its_queries_legends_and_thresholds():
    drawn = specs()
    board = dashboard()
    assert sorted(drawn) == sorted(f"panel-{panel['id']}" for panel in query_panels(board))
    for panel in query_panels(board):
        _, spec = drawn[f"panel-{panel['id']}"]
        assert [q["expr"] for q in spec["queries"]] == [t["expr"] for t in panel["targets"]], panel["title"]
        assert [q["legend"] for q in spec["queries"]] == [
            re.sub(r"\{\{(\w+)\}\}", r"[[\1]]", t["legendFormat"]) for t in panel["targets"]], panel["title"]
        steps = [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                 if step["value"] is not None]
        assert [t["value"] for t in spec["thresholds"]] == steps, panel["title"]
        defaults = panel["fieldConfig"]["defaults"]
        assert (spec["min"], spec["max"]) == (defaults.get("min"), defaults.get("max")), panel["title"]
        assert spec["units"] == consoles.UNITS[defaults["unit"]][0], panel["title"]


def test_each_page_holds_one_rows_panels_in_grafanas_order_and_widths():
    board = dashboard()
    rows, current = {}, None
    for panel in board["panels"]:
        if panel["type"] == "row":
            current = rows.setdefault(panel["title"], [])
        else:
            current.append(panel)
    pages = committed_pages()
    for row in panels.board().rows:
        text = pages[consoles.page_name(panels.board(), row)]
        sections = re.findall(r'<section class="iw-panel" id="panel-(\d+)" style="grid-column: span (\d+)"', text)
        assert sections == [(str(p["id"]), str(p["gridPos"]["w"])) for p in rows[row.title]], row.title


def test_every_grafana_variable_a_query_uses_has_a_console_value():
    used = {name for panel in query_panels(dashboard()) for target in panel["targets"]
            for name in re.findall(r"\$\w+", target["expr"])}
    assert used <= set(consoles.SUBSTITUTIONS), used - set(consoles.SUBSTITUTIONS)
    # $__rate_interval is fixed; $job, $instance, $route and $__range come from the URL
    assert consoles.SUBSTITUTIONS == {"$job": None, "$instance": None, "$route": None,
                                      "$__rate_interval": "1m", "$__range": None}
    assert consoles.DEFAULT_RANGE == "1h" == panels.board().time_from.removeprefix("now-")
    # in the script every page includes (the dashboard library), longest name first, so that
    # $__range is not read as $__r + ange
    [raw] = SUBSTITUTIONS.findall(committed_library())
    assert json.loads(raw) == sorted(map(list, consoles.SUBSTITUTIONS.items()), key=lambda pair: -len(pair[0]))


def test_no_page_holds_template_actions_but_its_own():
    for name, text in committed_pages().items():
        actions = set(re.findall(r"\{\{.*?\}\}", text, re.S))
        assert all(consoles._OWN_ACTIONS.fullmatch(action) for action in actions), (name, actions)
    # the library: its comment, one define and its end; its style and script hold no action
    actions = re.findall(r"\{\{.*?\}\}", committed_library(), re.S)
    assert actions[1:] == [f'{{{{ define "{consoles.DASHBOARD_TEMPLATE}" }}}}', "{{ end }}"], actions


def test_the_pages_need_no_prometheus_2_console_library_and_no_classic_file():
    for name, text in committed_pages().items():
        assert "PromConsole" not in text and "/classic/" not in text, name
        assert re.findall(r'\{\{ template "(\w+)"', text) == [consoles.LIBRARY_TEMPLATE,
                                                               consoles.DASHBOARD_TEMPLATE], name
    library = committed_library()
    assert "PromConsole" not in library and "/classic/" not in library
    # the query API of the page's own origin, relative: a route prefix keeps working
    assert 'new URL("../api/v1/", window.location.href)' in library


@pytest.fixture(scope="module")
def chart_library() -> Path:
    """The uPlot package npm installed from the committed lock file (cached)."""
    return install_chart_library()


def test_the_console_library_inlines_the_locked_uplot_with_its_licence(chart_library):
    lock = json.loads((REPO / consoles.CHART_LIBRARY_DIR / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/uplot"]["version"]
    assert json.loads((chart_library / "package.json").read_text())["version"] == version == "1.6.32"
    library = consoles.console_library(chart_library)
    # one template, whose body is one string value marked safe: html/template scans no script
    assert re.findall(r"\{\{ define \"(\w+)\" \}\}\{\{ \"", library) == [consoles.LIBRARY_TEMPLATE]
    assert library.rstrip().endswith('" | safeHtml }}{{ end }}')
    inline = json.loads(re.search(r'\{\{ (".*") \| safeHtml \}\}', library, re.S).group(1))
    assert (chart_library / "dist" / "uPlot.iife.min.js").read_text() in inline
    assert (chart_library / "dist" / "uPlot.min.css").read_text() in inline
    assert f"uPlot {version}" in inline and "The MIT License (MIT)" in inline and "Leon Sorokin" in inline


def test_a_library_that_would_close_its_script_early_is_refused(chart_library, tmp_path):
    copy = tmp_path / "uplot"
    (copy / "dist").mkdir(parents=True)
    for name in ("package.json", "LICENSE", "dist/uPlot.min.css"):
        (copy / name).write_text((chart_library / name).read_text())
    (copy / "dist" / "uPlot.iife.min.js").write_text('var s = "</script>";')
    with pytest.raises(ValueError, match="closing tag"):
        consoles.console_library(copy)


def test_every_pages_scripts_parse_as_javascript(tmp_path):
    """A script error would leave a page blank; node (which npm, installed for the chart library,
    runs on) parses them here in a second, the browser test draws them."""
    node = shutil.which("node") or shutil.which("nodejs")
    assert node, "node missing: scripts/system-deps.sh installs npm, which brings it"
    sources = {**committed_pages(), consoles.DASHBOARD_LIBRARY_FILE: committed_library()}
    assert len(re.findall(r"<script>(.*?)</script>", committed_library(), re.S)) == 1
    for name, text in sources.items():
        for index, script in enumerate(re.findall(r"<script>(.*?)</script>", text, re.S)):
            path = tmp_path / f"{name}-{index}.js"
            path.write_text(script)
            checked = subprocess.run([node, "--check", str(path)], capture_output=True, text=True, timeout=60)
            assert checked.returncode == 0, (name, index, checked.stderr)
