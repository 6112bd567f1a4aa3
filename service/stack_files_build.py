"""The setuptools hook that puts the native stack's files into the package (not installed itself).

pyproject.toml names :class:`BuildPy` as its ``build_py`` command: after the Python modules it
copies every file :data:`inferwatch.stack.files.STACK_FILES` names from the repository into
``inferwatch/stack/files/`` of the build, at the same relative paths and with their modes, so a
wheel runs ``inferwatch up`` outside a checkout; and it lists them (and itself) as sources, so an
sdist carries them and a wheel built from that sdist does too.

A source tree without the stack's folders (the service image copies ``service/`` alone) builds
without them: that package serves, it does not run ``inferwatch up``. A tree with them must hold
every file named (a renamed file fails the build).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent.parent
FILES_MODULE = Path(__file__).resolve().parent / "inferwatch" / "stack" / "files.py"


STACK_FOLDERS = ("otel-collector", "observability")


def _stack_files() -> list[Path]:
    """The stack's files, relative to ROOT, read with inferwatch.stack.files (loaded alone: the
    build environment has none of the package's dependencies); none without the stack's folders."""
    if not any((ROOT / folder).is_dir() for folder in STACK_FOLDERS):
        print(f"stack_files_build: no {' or '.join(STACK_FOLDERS)} beside service/: the package will not "
              "carry the native stack's files")
        return []
    spec = importlib.util.spec_from_file_location("_inferwatch_stack_files", FILES_MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.stack_files(ROOT)


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "inferwatch" / "stack" / "files"
        for relative in _stack_files():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, destination)

    def get_source_files(self) -> list[str]:
        own = [str(Path(__file__).resolve().relative_to(ROOT))]
        return [*super().get_source_files(), *own, *(str(path) for path in _stack_files())]
