"""The house stays easy to read: short functions where the job's life is written, and the old
scaffolding (private pydantic attributes, holder tables, a second request validator) does not return."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit]

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 60
# Where a job's life is written: the worker, the core's job driver and trainer, the shared state.
SHORT_FUNCTIONS = ("worker", "gacd_core/jobs.py", "gacd_core/trainer.py", "service/state")


def _files(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        path = ROOT / part
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return out


def _long_functions(path: Path, limit: int, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_over_60_lines_where_a_job_lives() -> None:
    long = [entry for path in _files(*SHORT_FUNCTIONS) for entry in _long_functions(path, MAX_LINES)]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_the_length_check_can_fail(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    sample = tmp_path / "long.py"
    sample.write_text(f"def long():\n{body}\n", encoding="utf-8")
    assert _long_functions(sample, MAX_LINES, tmp_path) == [f"long.py:1 long ({MAX_LINES + 1} lines)"]


@pytest.mark.parametrize(
    "needle",
    [
        "__pydantic_fields__",  # pydantic's private field table, written to rebuild a union
        "_HOLDERS",  # the table of models to rebuild when a method is declared
        "holds_job_spec",
        "contract_errors",  # the second validator of a job body
        "jsonschema_rs",
    ],
)
def test_no_scaffolding_left_in_the_packages(needle: str) -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _files("gacd_core", "service", "worker")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if needle in line
    ]
    assert not hits, f"{needle!r} is still used: {hits}"
