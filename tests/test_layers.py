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
    "gacd_core.catalog",
    "gacd_core.errors",
    "gacd_core.normalization",
    "gacd_core.artifacts",
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


def imports(path: Path, module: str, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
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
