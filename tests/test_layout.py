"""The package's rooms and the direction of their imports.

``service/inferwatch/`` has one subpackage per role: ``contract`` (the sources of truth),
``proxy`` (the request path), ``render`` (committed files generated from the contract) and
``stack`` (local tools). Imports go from the outer rooms to the contract, never back, and the
request path never reaches a renderer or the stack.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "service" / "inferwatch"
ROOMS = ("contract", "proxy", "render", "stack")

# room -> the inferwatch modules (prefixes) it may import; "inferwatch" alone is the root
# package (the version string).
ALLOWED: dict[str, tuple[str, ...]] = {
    "contract": ("inferwatch.contract",),
    "proxy": ("inferwatch.contract", "inferwatch.proxy", "inferwatch"),
    # render: also the proxy's settings, whose declarations make the docs' settings table
    "render": ("inferwatch.contract", "inferwatch.render", "inferwatch.proxy.config", "inferwatch"),
    "stack": ("inferwatch.contract", "inferwatch.render", "inferwatch.stack", "inferwatch.proxy.config", "inferwatch"),
}


# Only proxy/telemetry/ may build providers, readers, exporters and instrumentations; the rest of
# the package records through the OpenTelemetry API (opentelemetry.trace, opentelemetry.metrics).
SDK_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation")
SDK_ROOM = "proxy/telemetry/"


def imported_modules(source: str) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, function-level imports included."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "inferwatch":  # from inferwatch import x: x may be a room
                names += [f"inferwatch.{alias.name}" if alias.name in ROOMS else "inferwatch" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or (prefix != "inferwatch" and module.startswith(prefix + ".")) for prefix in prefixes)


def violations(room: str, module_path: str, source: str) -> list[str]:
    problems = []
    for module in imported_modules(source):
        top = module.split(".")[0]
        if top == "inferwatch" and not _allowed(module, ALLOWED[room]):
            problems.append(f"{module_path} ({room}) imports {module}")
        elif room == "contract" and top != "inferwatch" and top not in sys.stdlib_module_names:
            problems.append(f"{module_path} (contract) imports the third-party {module}: the contract is data")
    return problems


def sdk_violations(module_path: str, source: str) -> list[str]:
    """``module_path`` (relative to the package) importing the SDK or an exporter outside proxy/telemetry/."""
    if module_path.startswith(SDK_ROOM):
        return []
    return [f"{module_path} imports {module}: only {SDK_ROOM} touches the SDK and the exporters"
            for module in imported_modules(source)
            if any(module == sdk or module.startswith(sdk + ".") for sdk in SDK_MODULES)]


def room_modules(room: str) -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


def test_the_package_has_one_subpackage_per_role_and_nothing_loose_but_the_command():
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(ROOMS)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py"]


def test_every_room_says_in_its_docstring_what_lives_there_and_what_it_may_import():
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((PACKAGE / room / "__init__.py").read_text()))
        assert doc and "import" in doc, room


def test_imports_go_from_the_outer_rooms_to_the_contract_never_back():
    problems = [
        problem
        for room in ROOMS
        for path in room_modules(room)
        for problem in violations(room, str(path.relative_to(PACKAGE)), path.read_text())
    ]
    assert problems == []


def test_the_checker_catches_an_import_going_the_wrong_way():
    assert violations("contract", "contract/x.py", "from inferwatch.render.text import number\n")
    assert violations("contract", "contract/x.py", "import opentelemetry.sdk\n")
    assert violations("proxy", "proxy/x.py", "def f():\n    from inferwatch.stack.load import run_load\n")
    assert violations("proxy", "proxy/x.py", "from inferwatch import render\n")
    assert violations("render", "render/x.py", "import inferwatch.proxy.app\n")
    assert violations("stack", "stack/x.py", "from inferwatch.proxy.app import create_app\n")
    assert not violations("proxy", "proxy/x.py", "from inferwatch import __version__\nfrom inferwatch.contract.metrics import MAPPINGS\n")
    assert not violations("stack", "stack/x.py", "from inferwatch.proxy.config import Settings\n")


def test_only_the_telemetry_package_touches_the_sdk_and_the_exporters():
    problems = [
        problem
        for path in sorted(PACKAGE.rglob("*.py"))
        for problem in sdk_violations(path.relative_to(PACKAGE).as_posix(), path.read_text())
    ]
    assert problems == []
    assert (PACKAGE / SDK_ROOM / "setup.py").is_file()


def test_the_sdk_checker_catches_the_sdk_outside_the_telemetry_package():
    assert sdk_violations("proxy/app.py", "from opentelemetry.sdk.trace import TracerProvider\n")
    assert sdk_violations("proxy/x.py", "def f():\n    import opentelemetry.exporter.prometheus\n")
    assert sdk_violations("stack/x.py", "from opentelemetry.instrumentation.flask import FlaskInstrumentor\n")
    assert not sdk_violations("proxy/telemetry/setup.py", "from opentelemetry.sdk.trace import TracerProvider\n")
    assert not sdk_violations("proxy/predictor.py", "from opentelemetry import trace\nfrom opentelemetry.metrics import Meter\n")
