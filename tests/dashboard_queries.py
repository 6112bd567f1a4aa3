"""Run the committed dashboard's and Grafana rules' queries against a real Prometheus, as Grafana would.

Grafana's template variables are resolved the way Grafana resolves them: each variable's
``label_values(selector, label)`` is asked of Prometheus's label API, earlier variables
substituted into later ones, and "All" (no custom all value) becomes every listed value as a
regex ``(a|b)``, each value regex-escaped as Grafana's Prometheus datasource does.
``$__rate_interval`` and ``$__range`` get fixed windows that cover a test's few scrapes.
"""

from __future__ import annotations

import json
import math
import re
import time

import requests
import yaml

from alerting_stack import REPO, PrometheusServer
from inferwatch.render import grafana

# Grafana's built-in variables: a rate window of a few scrapes, a range of the whole test.
BUILT_INS = {"$__rate_interval": "1m", "$__range": "5m"}
# The characters Grafana's Prometheus datasource escapes in a multi-value variable.
REGEX_SPECIAL = re.compile(r"[$^*{}\[\]'+?.()|]")


def dashboard() -> dict:
    return json.loads((REPO / grafana.DASHBOARD_FILE).read_text())


def query_panels(board: dict) -> list[dict]:
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def panel_expressions(board: dict) -> list[tuple[str, str]]:
    """(panel title and refId, expr) of every panel query."""
    return [(f"{panel['title']} [{target['refId']}]", target["expr"])
            for panel in query_panels(board) for target in panel["targets"]]


def variable_queries(board: dict) -> list[tuple[str, str]]:
    return [(variable["name"], variable["query"]["query"]) for variable in board["templating"]["list"]]


def grafana_rules() -> list[dict]:
    rules = yaml.safe_load((REPO / grafana.ALERT_RULES_FILE).read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def rule_query(rule: dict) -> str:
    [query] = [data["model"]["expr"] for data in rule["data"] if data["datasourceUid"] == grafana.PROMETHEUS.uid]
    return query


def as_regex(values: list[str]) -> str:
    escaped = [REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


class DashboardQueries:
    """The dashboard's variables resolved against ``prometheus``, and its queries run there."""

    def __init__(self, prometheus: PrometheusServer, board: dict | None = None):
        self.prometheus = prometheus
        self.board = board or dashboard()
        self.values: dict[str, list[str]] = {}

    def resolve_variables(self) -> dict[str, list[str]]:
        """Every variable's values, "All" chosen, in the order Grafana resolves them."""
        self.values = {}
        for name, query in variable_queries(self.board):
            self.values[name] = self.label_values(self.substitute(query))
        return self.values

    def substitute(self, expr: str) -> str:
        chosen = {f"${name}": as_regex(values) for name, values in self.values.items() if values}
        substitutions = {**BUILT_INS, **chosen}
        # Longest names first: $__rate_interval before a hypothetical $__rate.
        for name in sorted(substitutions, key=len, reverse=True):
            expr = expr.replace(name, substitutions[name])
        return expr

    def label_values(self, query: str) -> list[str]:
        """Grafana's label_values(selector, label), asked of Prometheus as Grafana asks it."""
        selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query).groups()
        response = requests.get(self.prometheus.url + f"/api/v1/label/{label}/values",
                                params={"match[]": selector}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def result(self, expr: str) -> dict:
        response = requests.get(self.prometheus.url + "/api/v1/query",
                                params={"query": self.substitute(expr)}, timeout=10)
        return response.json()

    def problem(self, expr: str) -> str | None:
        """None when ``expr`` runs and returns at least one number; otherwise what is wrong."""
        body = self.result(expr)
        if body.get("status") != "success":
            return f"error: {body.get('errorType')}: {body.get('error')}"
        values = [float(sample["value"][1]) for sample in body["data"]["result"]]
        if not values:
            return "no data"
        return None if any(not math.isnan(v) for v in values) else "only NaN"

    def wait_for_data(self, expressions: list[tuple[str, str]], timeout: float) -> dict[str, str]:
        """Problems left once every expression answers, or the deadline passes: {where: problem}.

        Data can be late (a scrape, a rule evaluation away); a query Prometheus refuses never
        mends, so an error ends the wait at once. Variables are resolved anew on every round.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.resolve_variables()
            problems = {where: f"{problem}: {self.substitute(expr)}" for where, expr in expressions
                        if (problem := self.problem(expr))}
            refused = any(problem.startswith("error") for problem in problems.values())
            if not problems or refused or time.monotonic() > deadline:
                return problems
            time.sleep(0.5)

    def jobs_shown(self, expr: str) -> set[str]:
        """The job label of every series ``expr`` returns."""
        return {sample["metric"].get("job", "") for sample in self.result(expr)["data"]["result"]}
