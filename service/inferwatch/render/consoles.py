"""The dashboard as Prometheus console pages: the same panels, for the native stack.

``inferwatch up`` runs no Grafana, so the panel model (:mod:`inferwatch.render.panels`, which
:mod:`inferwatch.render.grafana` renders as the Grafana dashboard) is also rendered as Prometheus
console templates under ``observability/prometheus/consoles/``, one page per dashboard row.
Prometheus serves them itself (``--web.console.templates`` this folder) at
``/consoles/inferwatch.html`` (the first row) and ``/consoles/inferwatch-<row>.html``.

The pages need nothing from Prometheus but its template engine and its HTTP API: no console
library of Prometheus 2.x (``prom.lib``, ``PromConsole.Graph``; Prometheus 3 ships neither) and no
file under ``/classic/static`` (gone in 3.x). Each page draws with uPlot, a chart library from
npm (MIT), which the page includes as one template, ``inferwatch_chart_library``, defined in a
console library (``--web.console.libraries``) that ``inferwatch up`` writes with
:func:`console_library` from the package npm installed
(``observability/prometheus/chart-library/install.sh``: uPlot 1.6.32, pinned by its lock file,
cached): the page the browser gets holds the library inline. The script queries the same origin's
``/api/v1/query_range`` and ``/api/v1/alerts``, relative to the page, so a route prefix works.

Every panel keeps its Grafana place (its width on the 24-column grid), title, question, unit, min
and max, and queries each of its Grafana queries, byte for byte, after the substitutions below.
Threshold steps are drawn as dashed lines in the step's colour, and a stat's value takes the
colour of its step, as Grafana draws them. Every page shows the alerts that are pending or firing.

Grafana's variables have no console equivalent, so a page substitutes them (in the browser, into
the queries as written in the panel model):

* ``$job``, ``$instance``, ``$route``: URL parameters, regexes as Grafana's "All" writes them,
  e.g. ``/consoles/inferwatch.html?job=fraud-model&instance=10\\.0\\.0\\.7:8000``; absent, ``.*``:
  every value, which is Grafana's "All" here, because every panel query keeps inferwatch's series
  only already (through the marker or a recording rule);
* ``$__rate_interval``: ``1m`` (twelve 5 s scrapes; Grafana takes four scrapes or a step and a
  scrape, whichever is longer);
* ``$__range``: the time range shown, the URL parameter ``range`` (a Prometheus duration, e.g.
  ``range=6h``), ``1h`` when absent: the pages' (and the Grafana dashboard's) default.

The URL parameter ``end`` (Unix seconds) fixes the right edge; absent, the pages follow the clock
and draw again at the dashboard's refresh interval.

From the repository root::

    python -m inferwatch.render --check    # exit 1 and list the files that differ
    python -m inferwatch.render --write    # rewrite them after editing panels.py or this module
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from inferwatch.contract import durations
from inferwatch.contract.thresholds import THRESHOLDS, Thresholds
from inferwatch.render import panels
from inferwatch.render.panels import Board, Panel, Placed, Row
from inferwatch.render.text import number

CONSOLES_DIR = Path("observability/prometheus/consoles")
# The committed console library every page includes: the pages' shared style and script.
CONSOLE_LIBRARIES_DIR = Path("observability/prometheus/console_libraries")
DASHBOARD_LIBRARY_FILE = "inferwatch-dashboard.lib"
DASHBOARD_TEMPLATE = "inferwatch_dashboard"
CHART_LIBRARY_DIR = Path("observability/prometheus/chart-library")
PAGE_PREFIX = "inferwatch"
# The console library file inferwatch up writes, and the template it defines.
LIBRARY_FILE = "inferwatch.lib"
LIBRARY_TEMPLATE = "inferwatch_chart_library"

# Grafana's variables and what a console page puts in their place; None: the URL parameter of
# that name, ".*" when absent.
SUBSTITUTIONS: dict[str, str | None] = {
    panels.JOB: None,
    panels.INSTANCE: None,
    panels.ROUTE: None,
    panels.RATE_INTERVAL: "1m",
    panels.TIME_RANGE: None,
}
ALL = ".*"
# $__range when the URL has no `range`: the dashboard's own default time range.
DEFAULT_RANGE = "1h"
# What the range menu offers (any Prometheus duration works in the URL).
RANGES = ("5m", "15m", "1h", "3h", "6h", "12h", "1d", "2d", "7d")

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
    """What the page's script draws for one panel (Inferwatch.panel's argument)."""
    units, formatter = UNITS[panel.unit]
    return {
        "id": f"panel-{placed.id}",
        "kind": panel.kind,
        "queries": [{"ref": q.ref, "expr": q.expr, "legend": console_legend(q.legend)} for q in panel.queries],
        "thresholds": [{"value": step.value, "color": COLORS[step.color], "name": threshold_name(panel, step)}
                       for step in panel.threshold_lines],
        "steps": [{"value": step.value, "color": COLORS[step.color]} for step in panel.steps],
        "min": panel.minimum,
        "max": panel.maximum,
        "units": units,
        "formatter": formatter,
        "height": GRAPH_HEIGHT[panel.height],
    }


# The page's script. No template action may appear in it (html/template would escape it as JS),
# and it holds no regular-expression literal and no template literal, so that html/template's
# JavaScript scanner reads it unambiguously.
_SCRIPT = """
var Inferwatch = (function() {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var api = new URL("../api/v1/", window.location.href).href;
  var palette = %(palette)s;
  var substitutions = %(substitutions)s;
  var defaultRange = %(default_range)s;
  var refreshSeconds = %(refresh)s;
  var label = new RegExp("\\\\[\\\\[\\\\s*(\\\\w+)\\\\s*\\\\]\\\\]", "g");
  var UNITS = {s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000};
  var panels = {};

  // A Prometheus duration ("90s", "1h30m", "2d") in seconds; NaN when it is none.
  function seconds(text) {
    var total = 0, number = "", seen = false;
    for (var i = 0; i < text.length; i++) {
      var c = text.charAt(i);
      if (c >= "0" && c <= "9") { number += c; continue; }
      if (c === "m" && text.charAt(i + 1) === "s") { total += Number(number) / 1000; number = ""; seen = true; i++; continue; }
      if (!(c in UNITS) || number === "") { return NaN; }
      total += Number(number) * UNITS[c];
      number = "";
      seen = true;
    }
    return seen && number === "" ? total : NaN;
  }

  var range = params.get("range") || defaultRange;
  if (!(seconds(range) > 0)) { range = defaultRange; }
  var rangeSeconds = seconds(range);
  var fixedEnd = Number(params.get("end")) || null;

  // Grafana's variables, longest name first, with this page's values.
  var values = substitutions.map(function(pair) {
    var value = pair[1];
    if (value === null) {
      value = pair[0] === "$__range" ? range : (params.get(pair[0].slice(1)) || %(all)s);
    }
    return [pair[0], value];
  });

  function substitute(expr) {
    values.forEach(function(pair) { expr = expr.split(pair[0]).join(pair[1]); });
    return expr;
  }

  // A Grafana legend format with [[label]] for its labels; empty: the series' labels.
  function legend(format, metric) {
    if (!format) {
      var names = Object.keys(metric).filter(function(name) { return name !== "__name__"; });
      return (metric.__name__ || "") + "{" + names.map(function(name) {
        return name + "=" + JSON.stringify(metric[name]); }).join(", ") + "}";
    }
    return format.replace(label, function(match, name) { return name in metric ? metric[name] : ""; });
  }

  var PREFIXES = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  var SMALL = [[1e-3, "m"], [1e-6, "\\u00b5"], [1e-9, "n"]];
  function trim(x) { return String(Number(x.toPrecision(3))); }
  function large(x) {
    for (var i = 0; i < PREFIXES.length; i++) {
      if (Math.abs(x) >= PREFIXES[i][0]) { return trim(x / PREFIXES[i][0]) + PREFIXES[i][1]; }
    }
    return trim(x);
  }
  var formatters = {
    // seconds and the like: 2.5ms, 1.2k
    humanize: function(x) {
      if (x === 0 || Math.abs(x) >= 1) { return large(x); }
      for (var i = 0; i < SMALL.length; i++) {
        if (Math.abs(x) >= SMALL[i][0]) { return trim(x / SMALL[i][0]) + SMALL[i][1]; }
      }
      return x.toExponential(2);
    },
    plain: large,
    percent: function(x) { return large(x * 100); }
  };

  function query(path, args) {
    var url = new URL(path, api);
    Object.keys(args).forEach(function(name) { url.searchParams.set(name, args[name]); });
    return fetch(url.href, {headers: {"Accept": "application/json"}}).then(function(answer) {
      return answer.json().then(function(body) {
        if (body.status !== "success") { throw new Error(body.error || ("HTTP " + answer.status)); }
        return body.data;
      });
    });
  }

  // The colour of the step a value falls on: the last step whose value is at or below it.
  function stepColor(steps, value) {
    var color = null;
    steps.forEach(function(step) { if (step.value === null || value >= step.value) { color = step.color; } });
    return color;
  }

  function draw(spec, answers, start, end, step) {
    var node = document.getElementById(spec.id);
    var box = node.querySelector(".iw-graph");
    var formatter = formatters[spec.formatter];
    var times = [];
    for (var t = start; t <= end + 1e-9; t += step) { times.push(t); }
    var data = [times], series = [{}], colors = [], own = [], last = [];
    spec.thresholds.forEach(function(threshold) {
      data.push(times.map(function() { return threshold.value; }));
      series.push({label: threshold.name, stroke: threshold.color, width: 1, dash: [6, 4]});
      colors.push(threshold.color);
    });
    answers.forEach(function(answer, index) {
      answer.result.forEach(function(result) {
        var column = times.map(function() { return null; });
        var points = 0, latest = null;
        result.values.forEach(function(pair) {
          var at = Math.round((pair[0] - start) / step), value = parseFloat(pair[1]);
          if (at >= 0 && at < times.length && isFinite(value)) { column[at] = value; points++; latest = value; }
        });
        var color = palette[(own.length) %% palette.length];
        data.push(column);
        series.push({label: legend(spec.queries[index].legend, result.metric), stroke: color, width: 1.5,
                     spanGaps: false});
        colors.push(color);
        own.push(points);
        if (latest !== null) { last.push(latest); }
      });
    });
    var drawn = {};
    var options = {
      width: Math.max(box.clientWidth, 100),
      height: spec.height,
      series: series,
      cursor: {drag: {x: false, y: false}},
      legend: {show: spec.kind !== "stat"},
      // The panel's min and max where it sets them; elsewhere the data's, and a twentieth of
      // the span beyond it, so that no line runs along an edge of the plot.
      scales: {y: {range: function(u, low, high) {
        if (low === null || high === null || !isFinite(low) || !isFinite(high)) { low = 0; high = 1; }
        var pad = (high - low) / 20 || Math.abs(high) / 20 || 0.05;
        var lowest = spec.min === null ? low - pad : spec.min, highest = spec.max === null ? high + pad : spec.max;
        if (highest <= lowest) { highest = lowest + (Math.abs(lowest) || 1); }
        return [lowest, highest];
      }}},
      axes: [
        {show: spec.kind !== "stat", size: 30},
        {show: spec.kind !== "stat", size: 50 + 7 * spec.units.length, values: function(u, ticks) {
          return ticks.map(function(tick) { return formatter(tick) + spec.units; }); }}
      ],
      // uPlot draws on the next frame: the panel is marked when it has.
      hooks: {
        drawSeries: [function(u, index) { drawn[index] = true; }],
        draw: [function() {
          node.setAttribute("data-drawn", Object.keys(drawn).length);
          node.setAttribute("data-rendered", "true");
        }]
      }
    };
    if (panels[spec.id] && panels[spec.id].plot) { panels[spec.id].plot.destroy(); }
    box.textContent = "";
    var plot = new uPlot(options, data, box);
    var withData = own.filter(function(points) { return points > 0; }).length;
    panels[spec.id] = {
      exprs: spec.queries.map(function(q) { return substitute(q.expr); }),
      thresholds: spec.thresholds.map(function(threshold) { return threshold.value; }),
      colors: colors,
      plot: plot
    };
    node.setAttribute("data-series", withData);
    node.setAttribute("data-points", own.reduce(function(a, b) { return a + b; }, 0));
    node.removeAttribute("data-error");
    if (spec.kind === "stat") {
      var value = node.querySelector(".iw-value");
      value.textContent = last.length ?
        last.map(function(v) { return formatter(v) + spec.units; }).join("  ") : "no data";
      value.style.color = last.length ? stepColor(spec.steps, last[last.length - 1]) || "" : "";
    }
  }

  function load(spec) {
    var node = document.getElementById(spec.id);
    var end = fixedEnd || Date.now() / 1000;
    var step = Math.max(5, Math.round(rangeSeconds / 300));
    // On the step grid, rounded up: the newest sample stays in view, and the points of one
    // refresh line up with the next one's.
    end = Math.ceil(end / step) * step;
    var start = end - rangeSeconds;
    return Promise.all(spec.queries.map(function(q) {
      return query("query_range", {query: substitute(q.expr), start: start, end: end, step: step});
    })).then(function(answers) { draw(spec, answers, start, end, step); }).catch(function(error) {
      node.querySelector(".iw-graph").textContent = "query failed: " + error.message;
      node.setAttribute("data-error", error.message);
      node.setAttribute("data-rendered", "true");
    });
  }

  // The alerts that are pending or firing, on every page: one chip per alert name and state,
  // with how many there are and, on hover, whose they are.
  function alerts() {
    var box = document.getElementById("iw-alerts");
    return query("alerts", {}).then(function(data) {
      var groups = {};
      data.alerts.filter(function(alert) { return alert.state !== "inactive"; }).forEach(function(alert) {
        var key = alert.labels.alertname + " " + alert.state;
        var group = groups[key] = groups[key] || {name: alert.labels.alertname, state: alert.state, who: []};
        group.who.push([alert.labels.job, alert.labels.severity].filter(Boolean).join(", ") +
          ((alert.annotations && alert.annotations.summary) ? ": " + alert.annotations.summary : ""));
      });
      var keys = Object.keys(groups).sort();
      box.textContent = keys.length ? "" : "No alert is pending or firing.";
      keys.forEach(function(key) {
        var group = groups[key], chip = document.createElement("span");
        chip.className = "iw-alert iw-" + group.state;
        chip.setAttribute("data-alertname", group.name);
        chip.setAttribute("data-state", group.state);
        chip.title = group.who.join("\\n");
        chip.textContent = group.name + ": " + group.who.length + " " + group.state;
        box.appendChild(chip);
      });
      box.setAttribute("data-rendered", "true");
    }).catch(function(error) { box.textContent = "alerts: " + error.message; });
  }

  function controls() {
    document.querySelectorAll(".iw-controls input").forEach(function(input) {
      input.value = params.get(input.name) || "";
    });
    var menu = document.querySelector(".iw-controls select");
    if (!Array.prototype.some.call(menu.options, function(option) { return option.value === range; })) {
      menu.add(new Option(range, range));
    }
    menu.value = range;
    // Row links keep the chosen variables and range.
    document.querySelectorAll(".iw-nav a.iw-row").forEach(function(a) { a.search = window.location.search; });
  }

  function start(specs) {
    controls();
    function all() { specs.forEach(load); alerts(); }
    all();
    if (!fixedEnd) { window.setInterval(all, refreshSeconds * 1000); }
    window.addEventListener("resize", function() {
      specs.forEach(function(spec) {
        var entry = panels[spec.id], box = document.getElementById(spec.id).querySelector(".iw-graph");
        if (entry) { entry.plot.setSize({width: Math.max(box.clientWidth, 100), height: spec.height}); }
      });
    });
  }

  return {start: start, panels: panels, substitute: substitute, formatters: formatters, seconds: seconds};
})();
"""

_STYLE = """
body { margin: 0; background: #f4f5f5; color: #222; font: 14px/1.4 system-ui, sans-serif; }
a { color: #1f60c4; }
.iw-nav { position: fixed; top: 0; left: 0; right: 0; z-index: 3; background: #222; padding: 6px 12px; }
.iw-nav a { color: #ccc; margin-right: 14px; font-size: 0.9rem; text-decoration: none; }
.iw-nav a.iw-brand { color: #fff; font-weight: bold; }
.iw-nav a.iw-current { color: #fff; text-decoration: underline; }
main { padding: 40px 12px 12px; }
h1 { font-size: 1.2rem; margin: 6px 0; }
.iw-controls { font-size: 0.85rem; margin: 4px 0 6px; }
.iw-controls input { width: 12em; margin-right: 8px; }
.iw-alerts { font-size: 0.8rem; margin: 0 0 8px; min-height: 1.4em; color: #555; }
.iw-alert { display: inline-block; margin-right: 6px; padding: 1px 6px; border-radius: 3px; color: #fff; }
.iw-alert.iw-firing { background: #e02f44; }
.iw-alert.iw-pending { background: #ff9830; }
.iw-grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: 8px; }
.iw-panel { background: #fff; border: 1px solid #dcdcdc; padding: 6px 8px; min-width: 0; }
.iw-panel h2 { font-size: 0.95rem; font-weight: 600; margin: 0; }
.iw-panel .iw-question { font-size: 0.72rem; color: #555; margin: 2px 0 4px; max-height: 3.2em; overflow: hidden; }
.iw-panel .iw-value { font-size: 1.3rem; font-weight: 600; }
.iw-panel .iw-graph { min-height: 40px; }
.iw-panel .u-legend { font-size: 0.7rem; text-align: left; display: block; max-height: 5.6em; overflow-y: auto; }
.iw-panel .u-legend tr { display: inline-block; margin-right: 8px; }
.iw-panel .u-legend .u-marker { width: 0.8em; height: 0.8em; }
"""


def _page(board: Board, row: Row, placed_rows: dict[str, list[Placed]]) -> str:
    links = " ".join(
        f'<a class="iw-row{" iw-current" if other == row else ""}" href="{page_name(board, other)}">'
        f"{html.escape(other.title)}</a>"
        for other in board.rows)
    variables = "".join(
        f'{name[1:]} <input name="{name[1:]}" placeholder="{ALL}">'
        for name, value in SUBSTITUTIONS.items() if value is None and name != panels.TIME_RANGE)
    ranges = "".join(f'<option value="{r}">{r}</option>' for r in RANGES)
    sections, specs = [], []
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
        specs.append(json.dumps(graph_spec(panel, placed)))
    text = f"""{{{{/* {board.title}: {row.title}. Generated by `python -m inferwatch.render --write` from
service/inferwatch/render/panels.py and consoles.py: do not edit by hand. */}}}}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(board.title)}: {html.escape(row.title)}</title>
{{{{ template "{LIBRARY_TEMPLATE}" }}}}
{{{{ template "{DASHBOARD_TEMPLATE}" }}}}
</head>
<body>
<nav class="iw-nav">
<a class="iw-brand iw-row" href="{page_name(board, board.rows[0])}">{html.escape(board.title)}</a>
{links}
</nav>
<main>
<h1>{html.escape(row.title)}</h1>
<form class="iw-controls" method="get">{variables}range <select name="range">{ranges}</select>
<button type="submit">Apply</button> (regexes; empty: all)</form>
<div class="iw-alerts" id="iw-alerts"></div>
<div class="iw-grid">
{chr(10).join(sections)}
</div>
</main>
<script>
Inferwatch.start([
{("," + chr(10)).join(specs)}
]);
</script>
</body>
</html>
"""
    if "{{" in _without_actions(text):
        raise ValueError(f"{row.title}: text outside the page's own template actions holds '{{{{'")
    return text




_OWN_ACTIONS = re.compile(r'\{\{(/\*.*?\*/| template "(' + LIBRARY_TEMPLATE + "|" + DASHBOARD_TEMPLATE + r')" )\}\}', re.S)


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


def dashboard_library(board: Board | None = None) -> str:
    """The console library that defines ``inferwatch_dashboard``: the style and the script every
    page shares (the script draws the panels a page lists in its ``Inferwatch.start`` call).
    Written once here, not into each page; ``inferwatch up`` puts it beside the chart library."""
    board = board or panels.board()
    script = _SCRIPT % {
        "palette": json.dumps(list(PALETTE)),
        "substitutions": json.dumps(sorted(SUBSTITUTIONS.items(), key=lambda item: -len(item[0]))),
        "default_range": json.dumps(DEFAULT_RANGE),
        "refresh": number(durations.seconds(board.refresh)),
        "all": json.dumps(ALL),
    }
    text = (f"{{{{/* {board.title}: the console pages' style and script. Generated by `python -m inferwatch.render\n"
            f"--write` from service/inferwatch/render/consoles.py: do not edit by hand. */}}}}\n"
            f'{{{{ define "{DASHBOARD_TEMPLATE}" }}}}<style>{_STYLE}</style>\n<script>{script}</script>\n{{{{ end }}}}\n')
    if "{{" in _without_actions(re.sub(r'\{\{ (define "\w+"|end) \}\}', "", text)):
        raise ValueError("the dashboard library's style or script holds '{{'")
    return text


def _go_string(text: str) -> str:
    """``text`` as a Go string literal: JSON's escapes are Go's, left raw outside ASCII (a JSON
    surrogate pair is no Go escape)."""
    return json.dumps(text, ensure_ascii=False)


def console_library(package: Path) -> str:
    """The console library that defines ``inferwatch_chart_library``: uPlot's licence, CSS and
    script from the npm package at ``package`` (node_modules/uplot), inline.

    The library is one string value marked safe (``safeHtml``), not template text: html/template
    would otherwise scan the minified script as JavaScript, and a page whose scan ends inside
    what it took for a string fails to render.
    """
    version = json.loads((package / "package.json").read_text())["version"]
    licence = (package / "LICENSE").read_text().replace("--", "- -")
    css = (package / "dist" / "uPlot.min.css").read_text()
    script = (package / "dist" / "uPlot.iife.min.js").read_text()
    if "</script" in script.lower() or "</style" in css.lower():
        raise ValueError(f"{package}: the library holds a closing tag; it cannot be inlined")
    inline = f"<!-- uPlot {version}, inlined from npm.\n{licence}-->\n<style>{css}</style>\n<script>{script}</script>\n"
    return (f"{{{{/* uPlot {version} for inferwatch's console pages, written by inferwatch up from {package}:\n"
            f"do not edit (inferwatch.render.consoles.console_library). */}}}}\n"
            f'{{{{ define "{LIBRARY_TEMPLATE}" }}}}{{{{ {_go_string(inline)} | safeHtml }}}}{{{{ end }}}}\n')


def committed_files(root: Path, t: Thresholds = THRESHOLDS) -> dict[Path, str]:
    """{path under root: the text it must hold}."""
    files = {root / CONSOLES_DIR / name: text for name, text in pages(t).items()}
    files[root / CONSOLE_LIBRARIES_DIR / DASHBOARD_LIBRARY_FILE] = dashboard_library(panels.board(t))
    return files
