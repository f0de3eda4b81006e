"""The layers of the code base and the one direction of imports between them (README, "Where things live").

Statically, every import of every module (those inside functions too) is checked against the arrows
below; at run time, fresh interpreters check what importing each process's code pulls in: the API no
torch and no Celery tasks, the worker no FastAPI (tests/test_spec.py checks the same for gacd_core: its
specification without torch, all of it without the service stack). A synthetic package with one
forbidden import of each kind shows that the checker catches them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

# Each layer, the packages it consists of (longest prefix wins).
LAYERS = {
    "service.api": "api",
    "service.state": "state",
    "service.client": "client",
    "service.launch": "launch",
    "service": "service",  # the package's __init__ only
    "worker": "worker",
    "gacd_core": "core",
}
# The part of gacd_core that imports without torch: the job specification and what it needs.
LIGHT_CORE = (
    "gacd_core.spec",
    "gacd_core.spec_types",
    "gacd_core.method_params",
    "gacd_core.catalog",
    "gacd_core.errors",
    "gacd_core.normalization",
    "gacd_core.datarefs",
    "gacd_core.progress",
    "gacd_core.artifacts",
    "gacd_core.report_model",
    "gacd_core.architectures",
    "gacd_core.zoo",
)

# The arrows: which layers each layer may import ("core-light" is LIGHT_CORE, "core" all of gacd_core).
ALLOWED = {
    "api": {"api", "state", "core-light"},
    "state": {"state", "core-light"},
    "client": {"client", "core-light"},
    "launch": {"launch", "client", "state", "core-light"},
    "worker": {"worker", "state", "core-light", "core"},
    "core": {"core", "core-light"},
    "core-light": {"core-light"},
    "service": set(),
}
# Third-party packages a layer must not import at all.
FORBIDDEN = {
    "api": {"torch", "torchvision", "celery", "redis"},
    "state": {"torch", "torchvision", "fastapi", "starlette"},
    "client": {"torch", "torchvision", "fastapi", "starlette", "celery", "redis"},
    "launch": {"torch", "torchvision", "fastapi", "starlette", "celery", "redis"},
    "worker": {"fastapi", "starlette", "redis"},
    "core": {"fastapi", "starlette", "celery", "redis"},
    "core-light": {"torch", "torchvision", "numpy", "fastapi", "starlette", "celery", "redis"},
    "service": set(),
}
STORE = "service.state.store"  # the one package that talks to Redis (its modules too)


def layer_of(module: str) -> str | None:
    """The layer a module of this code base belongs to (None for anything else)."""
    if module in LIGHT_CORE or module == "gacd_core":
        return "core-light"
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str, root: Path, *, at_import_time: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved; with
    ``at_import_time``, only those that run when the module is imported (not in functions, not under
    ``if TYPE_CHECKING:``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in _run_at_import(tree.body) if at_import_time else ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` may import a module: count pkg.mod when it is one of ours
            names = [f"{base}.{a.name}" for a in node.names]
            out += [(node.lineno, n if layer_of(n) is not None and _is_module(n, root) else base) for n in names]
    return out


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a module body that run when it is imported (function bodies do not)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            checking = isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(node.test)
            yield from _run_at_import(node.orelse if checking else [*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            yield from _run_at_import([*node.body, *handlers, *node.orelse, *node.finalbody])
        elif isinstance(node, ast.With | ast.For | ast.While | ast.ClassDef):
            yield from _run_at_import(node.body)


def import_cycles(root: Path, packages: tuple[str, ...] = ("gacd_core", "service", "worker")) -> list[list[str]]:
    """Each cycle of module-level imports among the modules of ``packages``: ``[a, b, ..., a]``."""
    graph: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            targets = {name for _, name in imports(path, module, root, at_import_time=True)}
            graph[module] = {t for t in targets if t.split(".")[0] in packages and t != module and _is_module(t, root)}
    cycles, done = [], set()
    for start in sorted(graph):
        path = _path_back(graph, start, start, [start], set())
        if path is not None and not set(path) <= done:
            cycles.append(path)
            done |= set(path)
    return cycles


def _path_back(graph: dict[str, set[str]], node: str, goal: str, path: list[str], seen: set[str]) -> list[str] | None:
    """A path of imports from ``node`` back to ``goal`` (depth first), or None."""
    for nxt in sorted(graph.get(node, ())):
        if nxt == goal:
            return [*path, goal]
        if nxt not in seen:
            seen.add(nxt)
            found = _path_back(graph, nxt, goal, [*path, nxt], seen)
            if found is not None:
                return found
    return None


def _is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def redis_reached(path: Path) -> list[int]:
    """Lines that use a store's Redis client (``store.r``, a part's ``_redis``) directly."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in ("r", "_redis")]


def violations(root: Path, packages: tuple[str, ...] = ("service", "worker", "gacd_core")) -> list[str]:
    """Every import that breaks the arrows, as 'file:line: module imports what'."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            layer = layer_of(module)
            assert layer is not None, module
            where = f"{path.relative_to(root)}"
            in_store = module == STORE or module.startswith(STORE + ".")
            for line, name in imports(path, module, root):
                target = layer_of(name)
                top = name.split(".")[0]
                if target is not None and target != layer and target not in ALLOWED[layer]:
                    found.append(f"{where}:{line}: {layer} imports {name} ({target})")
                elif top in FORBIDDEN[layer] and not (top == "redis" and in_store):
                    found.append(f"{where}:{line}: {layer} imports {name}")
            if not in_store and package != "gacd_core":
                found += [f"{where}:{line}: reaches into Redis (store.r)" for line in redis_reached(path)]
    return found


def test_every_import_follows_the_arrows() -> None:
    assert violations(ROOT) == []


def test_no_module_imports_itself_through_others() -> None:
    cycles = import_cycles(ROOT)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_checker_finds_a_cycle_and_only_at_import_time(tmp_path: Path) -> None:
    pkg = tmp_path / "gacd_core"
    pkg.mkdir()
    files = {
        "__init__.py": "",
        "a.py": "from gacd_core import b\n",
        "b.py": "import gacd_core.c\n",
        "c.py": "from . import a\n",  # a -> b -> c -> a
        "d.py": "def late():\n    from gacd_core import e\n",  # d <-> e only when late() runs
        "e.py": "import typing\nimport gacd_core.d\nif typing.TYPE_CHECKING:\n    from gacd_core import f\n",
        "f.py": "from gacd_core import e\n",  # e -> f for the type checker only
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    assert import_cycles(tmp_path, ("gacd_core",)) == [["gacd_core.a", "gacd_core.b", "gacd_core.c", "gacd_core.a"]]


def test_the_checker_catches_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    files = {
        "service/__init__.py": "",
        "service/api/__init__.py": "",
        "service/api/bad.py": "import torch\nfrom worker import runner\n\ndef f():\n    import redis\n",
        "service/state/__init__.py": "",
        "service/state/bad.py": "from fastapi import FastAPI\nfrom ..api import bad\n",
        "service/state/store.py": "import redis\n",  # allowed: the store is where Redis lives
        "service/client/__init__.py": "",
        "service/client/bad.py": "from service.state.store import Store\n",
        "worker/__init__.py": "",
        "worker/runner.py": "",
        "worker/bad.py": "import fastapi\nfrom service.api.app import app\n\ndef g(store):\n    store.r.get('x')\n",
        "gacd_core/__init__.py": "",
        "gacd_core/bad.py": "from service.state import store\nimport celery\n",
        "gacd_core/spec.py": "import torch\nfrom gacd_core import bad\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    expected = [
        "gacd_core/bad.py:1: core imports service.state.store (state)",
        "gacd_core/bad.py:2: core imports celery",
        "gacd_core/spec.py:1: core-light imports torch",
        "gacd_core/spec.py:2: core-light imports gacd_core.bad (core)",
        "service/api/bad.py:1: api imports torch",
        "service/api/bad.py:2: api imports worker.runner (worker)",
        "service/api/bad.py:5: api imports redis",
        "service/client/bad.py:1: client imports service.state.store (state)",
        "service/state/bad.py:1: state imports fastapi",
        "service/state/bad.py:2: state imports service.api.bad (api)",
        "worker/bad.py:1: worker imports fastapi",
        "worker/bad.py:2: worker imports service.api.app (api)",
        "worker/bad.py:5: reaches into Redis (store.r)",
    ]
    assert sorted(found) == expected


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(json.loads(out.stdout.splitlines()[-1]))


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _every_module(package: str) -> list[str]:
    return [module_name(p, ROOT) for p in sorted((ROOT / package).rglob("*.py"))]


def test_the_api_process_has_no_torch_and_no_worker() -> None:
    code = "\n".join(f"import {m}" for m in _every_module("service")) + (
        "\nimport tempfile\nfrom service.api.app import create_app\nfrom service.state.settings import Settings\n"
        "create_app(Settings(api_keys='k' * 16 + '=t', artifact_root=tempfile.mkdtemp())).openapi()"
    )
    loaded = _loaded_after(code)
    assert {"service.api.app", "fastapi", "celery"} <= loaded  # the probe did import the API
    assert not _tops(loaded) & {"torch", "torchvision", "worker"}
    assert not [m for m in loaded if m.startswith("gacd_core.") and m not in LIGHT_CORE]


def test_the_worker_process_has_no_fastapi() -> None:
    code = "import worker.tasks, worker.runner, worker.validate, worker.reaper, gacd_core.jobs"
    loaded = _loaded_after(code)
    assert {"worker.tasks", "torch", "celery"} <= loaded
    assert not _tops(loaded) & {"fastapi", "starlette", "uvicorn", "multipart", "python_multipart"}
    assert not [m for m in loaded if m.startswith(("service.api", "service.client", "service.launch"))]
