"""The console pages are the Grafana dashboard's panels: same queries, thresholds, places.

``observability/prometheus/consoles/`` is rendered from the same panel model as the Grafana
dashboard (``inferwatch.render.panels``). Read back from the committed files, every panel of the
committed dashboard JSON is on exactly one page, in its row, with its width, and queries exactly
its Grafana panel's queries (the pages substitute Grafana's variables in the browser, so the
strings are equal before substitution; tests/test_dashboard_browser.py checks what the browser
ran after it); its threshold lines are the Grafana panel's threshold steps.
"""

from __future__ import annotations

import json
import re

from alerting_stack import REPO
from dashboard_queries import query_panels
from inferwatch.render import consoles, grafana, panels

SPEC = re.compile(r"^Inferwatch\.graph\((\{.*\})\);$", re.M)


def committed_pages() -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted((REPO / consoles.CONSOLES_DIR).glob("*.html"))}


def specs() -> dict[str, tuple[str, dict]]:
    """{panel id: (page, what its script draws)} from the committed pages."""
    found = {}
    for name, text in committed_pages().items():
        for raw in SPEC.findall(text):
            spec = json.loads(raw)
            assert spec["id"] not in found, spec["id"]
            found[spec["id"]] = (name, spec)
    return found


def dashboard() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def test_the_committed_pages_are_the_rendering_one_per_row():
    assert committed_pages() == consoles.pages()
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
    # $__rate_interval and $__range are numbers of a unit Prometheus reads; the rest URL parameters
    assert consoles.SUBSTITUTIONS[panels.RATE_INTERVAL] == "1m" and consoles.SUBSTITUTIONS[panels.TIME_RANGE] == "1h"
    for text in committed_pages().values():
        for name in ("job", "instance", "route"):
            assert f'["${name}", {{{{ or .Params.{name} ".*" }}}}]' in text


def test_no_page_holds_template_actions_but_its_own():
    for name, text in committed_pages().items():
        actions = set(re.findall(r"\{\{.*?\}\}", text, re.S))
        assert all(consoles._OWN_ACTIONS.fullmatch(action) for action in actions), (name, actions)
