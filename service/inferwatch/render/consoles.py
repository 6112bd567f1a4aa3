"""The dashboard as Prometheus console pages: the same panels, for the native stack.

``inferwatch up`` runs no Grafana, so the panel model (:mod:`inferwatch.render.panels`, which
:mod:`inferwatch.render.grafana` renders as the Grafana dashboard) is also rendered as Prometheus
console templates under ``observability/prometheus/consoles/``, one page per dashboard row.
Prometheus serves them itself (``--web.console.templates`` this folder,
``--web.console.libraries`` the console libraries its package ships, for ``prom_console_head``
and the time control), at ``/consoles/inferwatch.html`` (the first row) and
``/consoles/inferwatch-<row>.html``. Every graph is ``PromConsole.Graph`` from those libraries;
every panel keeps its Grafana place (its width on the 24-column grid), title, question, unit,
min and max, and queries each of its Grafana queries, byte for byte, after the substitutions below.

Grafana's variables have no console equivalent, so a page substitutes them (in the browser, into
the queries as written in the panel model):

* ``$job``, ``$instance``, ``$route``: URL parameters, regexes as Grafana's "All" writes them,
  e.g. ``/consoles/inferwatch.html?job=fraud-model&instance=10\\.0\\.0\\.7:8000``; absent, ``.*``:
  every value, which is Grafana's "All" here, because every panel query keeps inferwatch's series
  only already (through the marker or a recording rule);
* ``$__rate_interval``: ``1m`` (twelve 5 s scrapes; Grafana takes four scrapes or a step and a
  scrape, whichever is longer);
* ``$__range``: ``1h``, the pages' (and the Grafana dashboard's) default time range.

Alert thresholds are drawn where the Grafana panel draws them: each threshold step is a second,
constant query (``vector(2)``), in the step's colour, listed before the panel's own queries.

From the repository root::

    python -m inferwatch.render --check    # exit 1 and list the files that differ
    python -m inferwatch.render --write    # rewrite them after editing panels.py or this module
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import panels
from inferwatch.render.panels import Board, Panel, Placed, Row
from inferwatch.render.text import number

CONSOLES_DIR = Path("observability/prometheus/consoles")
PAGE_PREFIX = "inferwatch"

# Grafana's variables and what a console page puts in their place; None: the URL parameter of
# that name, ".*" when absent.
SUBSTITUTIONS: dict[str, str | None] = {
    panels.JOB: None,
    panels.INSTANCE: None,
    panels.ROUTE: None,
    panels.RATE_INTERVAL: "1m",
    panels.TIME_RANGE: "1h",
}
ALL = ".*"

# Grafana's named colours, as its default theme draws them.
COLORS = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a", "orange": "#ff9830"}
# Grafana's classic palette, for the panels' own series.
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0",
           "#508642", "#cca300", "#447ebc", "#c15c17", "#890f02", "#0a437c", "#6d1f62", "#584477")

# Grafana unit id -> (the y axis's unit text, the number formatter Inferwatch.formatters names).
UNITS = {
    "s": ("s", "humanize"),
    "percent": ("%", "plain"),
    "percentunit": ("%", "percent"),
    "reqps": (" req/s", "plain"),
    "cps": (" /s", "plain"),
    "mbytes": (" MiB", "plain"),
    "short": ("", "plain"),
    "none": ("", "plain"),
    "suffix:x": ("x", "plain"),
}
# Pixels of graph for a panel of Grafana height h (30 px a grid row, less title and legend).
GRAPH_HEIGHT = {panels.TIMESERIES_HEIGHT: 170, panels.STAT_HEIGHT: 70}

# Grafana legend formats name labels as {{label}}; a Go template would take that for an action.
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def page_name(board: Board, row: Row) -> str:
    """The first row is the dashboard's front page, ``inferwatch.html``."""
    return f"{PAGE_PREFIX}.html" if row == board.rows[0] else f"{PAGE_PREFIX}-{row.slug}.html"


def dashboard_path(board: Board | None = None) -> str:
    """The URL path of the dashboard's first page on Prometheus's web server."""
    board = board or panels.board()
    return f"/consoles/{page_name(board, board.rows[0])}"


def console_legend(legend: str) -> str:
    """``{{job}} {{route}}`` as the page writes it: ``[[job]] [[route]]``."""
    return _LEGEND_LABEL.sub(r"[[\1]]", legend)


def threshold_name(panel: Panel, step: panels.Step) -> str:
    value = number(step.value)
    if panel.unit == "percentunit":
        value = number(round(step.value * 100, 9)) + "%"
    elif panel.unit in UNITS:
        value += UNITS[panel.unit][0]
    return f"threshold {value} ({step.color} from here)"


def graph_spec(panel: Panel, placed: Placed) -> dict:
    """What the page's script draws for one panel (Inferwatch.graph's argument)."""
    units, formatter = UNITS[panel.unit]
    return {
        "id": f"panel-{placed.id}",
        "kind": panel.kind,
        "queries": [{"ref": q.ref, "expr": q.expr, "legend": console_legend(q.legend)} for q in panel.queries],
        "thresholds": [{"value": step.value, "color": COLORS[step.color], "name": threshold_name(panel, step)}
                       for step in panel.threshold_lines],
        "min": panel.minimum,
        "max": panel.maximum,
        "units": units,
        "formatter": formatter,
        "height": GRAPH_HEIGHT[panel.height],
    }


_SCRIPT = """
var Inferwatch = {
  // Grafana's variables and their values on this page, longest name first.
  values: [],
  palette: %(palette)s,
  formatters: {
    humanize: function(x) {
      return x === 0 ? "0" : PromConsole.NumberFormatter.humanize(x);
    },
    plain: PromConsole.NumberFormatter.humanizeNoSmallPrefix,
    percent: function(x) {
      return x === null ? "null" : PromConsole.NumberFormatter.humanizeNoSmallPrefix(x * 100);
    }
  },
  substitute: function(expr) {
    for (var i = 0; i < this.values.length; i++) {
      expr = expr.split(this.values[i][0]).join(this.values[i][1]);
    }
    return expr;
  },
  // A Grafana legend format with [[label]] for its labels; text after the last label is kept.
  legend: function(format) {
    var label = new RegExp("\\\\[\\\\[\\\\s*(\\\\w+)\\\\s*\\\\]\\\\]", "g");
    return function(metric) {
      return format.replace(label, function(match, name) { return name in metric ? metric[name] : ""; });
    };
  },
  graph: function(spec) {
    var node = document.getElementById(spec.id);
    var exprs = [], names = [], colors = [];
    spec.thresholds.forEach(function(threshold) {
      exprs.push("vector(" + threshold.value + ")");
      names.push(threshold.name);
      colors.push(threshold.color);
    });
    spec.queries.forEach(function(query) {
      exprs.push(Inferwatch.substitute(query.expr));
      names.push(Inferwatch.legend(query.legend));
    });
    var formatter = Inferwatch.formatters[spec.formatter];
    var graph = new PromConsole.Graph({
      node: node.querySelector(".iw-graph"),
      expr: exprs,
      name: names,
      colorScheme: colors.concat(Inferwatch.palette),
      min: spec.min === null ? "auto" : spec.min,
      max: spec.max === null ? undefined : spec.max,
      height: spec.height,
      yUnits: spec.units,
      yAxisFormatter: formatter,
      yHoverFormatter: formatter
    });
    // Mark the panel once its queries answered: how many of its own series have data.
    var render = graph._render;
    graph._render = function(data) {
      render.call(graph, data);
      var series = 0, points = 0, last = [];
      data.slice(spec.thresholds.length).forEach(function(answer) {
        (answer.data ? answer.data.result : []).forEach(function(result) {
          var values = result.values.filter(function(v) { return !isNaN(parseFloat(v[1])); });
          if (values.length) {
            series += 1;
            points += values.length;
            last.push(parseFloat(values[values.length - 1][1]));
          }
        });
      });
      node.setAttribute("data-series", series);
      node.setAttribute("data-points", points);
      node.setAttribute("data-rendered", "true");
      if (spec.kind === "stat") {
        node.querySelector(".iw-value").textContent = last.length ?
          last.map(function(v) { return formatter(v) + spec.units; }).join("  ") : "no data";
      }
    };
  }
};
"""

# prom.lib's prom_console_head, with the paths Debian's Prometheus serves its static files at:
# Debian replaces the bundled copies by its own packages (libjs-popper.js is a folder, and there
# is no d3.layout file: Debian's d3 3.5 holds d3.layout), so the library's own head would load an
# HTML folder listing and a 404 page as scripts.
_HEAD = """<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/bootstrap4/css/bootstrap.min.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/css/prom_console.css">
<link type="text/css" rel="stylesheet" href="{{ pathPrefix }}/classic/static/vendor/bootstrap4-glyphicons/css/bootstrap-glyphicons.css">
<script src="{{ pathPrefix }}/classic/static/d3/d3.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/rickshaw/rickshaw.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/jquery/jquery.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/popper.js/umd/popper.min.js"></script>
<script src="{{ pathPrefix }}/classic/static/bootstrap4/js/bootstrap.min.js"></script>
<script>var PATH_PREFIX = "{{ pathPrefix }}";</script>
<script src="{{ pathPrefix }}/classic/static/js/prom_console.js"></script>"""

_STYLE = """
body { background: #f4f5f5; }
.iw-nav { position: fixed; top: 0; left: 0; right: 0; z-index: 3; background: #222; padding: 6px 12px; }
.iw-nav a { color: #ccc; margin-right: 14px; font-size: 0.9rem; }
.iw-nav a.iw-brand { color: #fff; font-weight: bold; }
.iw-nav a.iw-current { color: #fff; text-decoration: underline; }
.prom_console_content { padding-top: 46px; }
.iw-variables { font-size: 0.85rem; margin: 4px 0 10px; }
.iw-variables input { width: 12em; margin-right: 8px; }
.iw-grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: 8px; }
.iw-panel { background: #fff; border: 1px solid #dcdcdc; padding: 6px 8px; min-width: 0; }
.iw-panel h2 { font-size: 0.95rem; font-weight: 600; margin: 0; }
.iw-panel .iw-question { font-size: 0.72rem; color: #555; margin: 2px 0 4px; max-height: 3.2em; overflow: hidden; }
.iw-panel .iw-value { font-size: 1.3rem; font-weight: 600; }
.iw-panel .prom_graph_table { width: 100%; }
.iw-panel .rickshaw_legend { font-size: 0.7rem; }
"""


def _page(board: Board, row: Row, placed_rows: dict[str, list[Placed]]) -> str:
    links = " ".join(
        f'<a class="{"iw-current" if other == row else ""}" href="{page_name(board, other)}">{html.escape(other.title)}</a>'
        for other in board.rows)
    variables = "".join(
        f'{name[1:]} <input name="{name[1:]}" value="{{{{ .Params.{name[1:]} }}}}" placeholder="{ALL}">'
        for name, value in SUBSTITUTIONS.items() if value is None)
    sections, scripts = [], []
    for placed in placed_rows[row.title]:
        panel = placed.item
        value = '<div class="iw-value"></div>' if panel.kind == "stat" else ""
        sections.append(
            f'<section class="iw-panel" id="panel-{placed.id}" style="grid-column: span {panel.width}" '
            f'data-title="{html.escape(panel.title)}" data-kind="{panel.kind}" '
            f'data-thresholds="{len(panel.threshold_lines)}">\n'
            f"  <h2>{html.escape(panel.title)}</h2>\n"
            f'  <p class="iw-question" title="{html.escape(panel.description)}">{html.escape(panel.description)}</p>\n'
            f"  {value}<div class=\"iw-graph\"></div>\n"
            "</section>")
        scripts.append(f"Inferwatch.graph({json.dumps(graph_spec(panel, placed))});")
    values = ",\n  ".join(
        f'[{json.dumps(name)}, {json.dumps(value) if value else f"{{{{ or .Params.{name[1:]} {json.dumps(ALL)} }}}}"}]'
        for name, value in sorted(SUBSTITUTIONS.items(), key=lambda item: -len(item[0])))
    text = f"""{{{{/* {board.title}: {row.title}. Generated by `python -m inferwatch.render --write` from
service/inferwatch/render/panels.py and consoles.py: do not edit by hand. */}}}}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(board.title)}: {html.escape(row.title)}</title>
{_HEAD}
<style>{_STYLE}</style>
<script>{_SCRIPT % {"palette": json.dumps(list(PALETTE))}}</script>
</head>
<body>
<nav class="iw-nav">
<a class="iw-brand" href="{page_name(board, board.rows[0])}">{html.escape(board.title)}</a>
{links}
<a href="{{{{ pathPrefix }}}}/classic/alerts">Alerts</a>
<a href="{{{{ pathPrefix }}}}/classic/graph">Query</a>
</nav>
{{{{ template "prom_content_head" . }}}}
<h1 class="h4">{html.escape(row.title)}</h1>
<form class="iw-variables" method="get">{variables}<button type="submit">Apply</button> (regexes; empty: all)</form>
<div class="iw-grid">
{chr(10).join(sections)}
</div>
<script>
Inferwatch.values = [
  {values}
];
{chr(10).join(scripts)}
// Row links keep the chosen variables.
document.querySelectorAll(".iw-nav a[href$='.html']").forEach(function(a) {{ a.search = window.location.search; }});
</script>
{{{{ template "prom_content_tail" . }}}}
{{{{ template "tail" }}}}
"""
    if "{{" in _without_actions(text):
        raise ValueError(f"{row.title}: text outside the page's own template actions holds '{{{{'")
    return text


_OWN_ACTIONS = re.compile(r'\{\{(/\*.*?\*/| template "[a-z_]+"( \.)? | \.Params\.\w+ | pathPrefix | or \.Params\.\w+ "[^"]*" )\}\}', re.S)


def _without_actions(text: str) -> str:
    return _OWN_ACTIONS.sub("", text)


def pages(t: Thresholds = THRESHOLDS) -> dict[str, str]:
    """{file name: console template}, one page per row of the dashboard."""
    board = panels.board(t)
    placed_rows: dict[str, list[Placed]] = {}
    current = None
    for placed in panels.layout(board):
        if isinstance(placed.item, Row):
            current = placed_rows.setdefault(placed.item.title, [])
        else:
            current.append(placed)
    return {page_name(board, row): _page(board, row, placed_rows) for row in board.rows}


def committed_files(root: Path, t: Thresholds = THRESHOLDS) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    return {root / CONSOLES_DIR / name: text for name, text in pages(t).items()}
