"""A new method is its parameters class and its implementation file, nothing else (docs/extending.md).

The toy method is added to a copy of ``gacd_core`` the way a developer adds one: its parameters class
(tests/_toy_method_params.py) into ``gacd_core/method_params.py``, named in ``MethodParams``, and its
implementation (tests/_toy_method.py) as ``gacd_core/methods/logit_matching.py``. A fresh interpreter
whose ``gacd_core`` is that copy then runs tests/_toy_method_checks.py: the method is listed, validated,
trained, evaluated and reported by the ``gacd`` command, and accepted and run by the HTTP API and a
worker process (which imports the same copy), because every list of methods derives from the union
of the parameters classes.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MARKER = "# --- added to gacd_core/method_params.py ---\n"
UNION_END = "    GACDParams,\n]"  # the last entry of MethodParams


def add_the_toy_method(root: Path) -> Path:
    """A copy of gacd_core under ``root`` with the toy method added; returns the package's directory."""
    package = root / "gacd_core"
    shutil.copytree(ROOT / "gacd_core", package, ignore=shutil.ignore_patterns("__pycache__"))
    params = package / "method_params.py"
    text = params.read_text(encoding="utf-8")
    assert text.count(UNION_END) == 1, "MethodParams no longer ends with GACDParams: update UNION_END"
    declaration = (TESTS / "_toy_method_params.py").read_text(encoding="utf-8").split(MARKER, 1)[1]
    union = text.index("MethodParams = Union[")
    text = text[:union] + declaration.lstrip("\n") + "\n\n" + text[union:]
    params.write_text(text.replace(UNION_END, "    GACDParams,\n    LogitMatchingParams,\n]"), encoding="utf-8")
    shutil.copy(TESTS / "_toy_method.py", package / "methods" / "logit_matching.py")
    return package


def _changed(a: Path, b: Path) -> list[str]:
    """Files that differ or exist on one side only, between two package trees (``__pycache__`` aside)."""
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    out += [f"{d}/{f}" for d, sub in cmp.subdirs.items() for f in _changed(a / d, b / d)]
    return sorted(out)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_the_toy_method(tmp_path_factory.mktemp("with-toy"))


@pytest.mark.unit
def test_adding_a_method_touches_two_files(package: Path) -> None:
    assert _changed(ROOT / "gacd_core", package) == ["method_params.py", "methods/logit_matching.py"]


@pytest.mark.api
@pytest.mark.worker
@pytest.mark.e2e
def test_the_new_method_is_listed_trained_and_served(package: Path) -> None:
    """tests/_toy_method_checks.py in a fresh interpreter (and its worker) that imports the copy."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package.parent), os.environ.get("PYTHONPATH")])),
        "GACD_TOY_PACKAGE": str(package),
        "OMP_NUM_THREADS": "1",  # tiny models: threads only contend
    }
    argv = [sys.executable, "-m", "pytest", str(TESTS / "_toy_method_checks.py"), "-q", "-p", "no:cacheprovider"]
    # the copy's directory first on sys.path (the interpreter's working directory comes first)
    run = subprocess.run(argv, cwd=package.parent, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert re.search(r"^4 passed", run.stdout, re.M), run.stdout[-2000:]  # every check ran, none skipped
