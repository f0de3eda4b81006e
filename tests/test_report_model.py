"""The typed report (``gacd_core.report_model``): every committed ``report.json`` loads into it and renders
the sections it rendered before the report was typed; a new job writes the same keys as then (plus
``schema_version``); a renamed key is refused; the published JSON Schema is the model's, importable and
served without torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from gacd_core.report_html import render_html
from gacd_core.report_model import SCHEMA_VERSION, Metrics, Report, migrate, report_json_schema

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
COMMITTED = sorted((ROOT / "benchmarks").rglob("report.json"))
SCHEMA_FILE = ROOT / "docs" / "report.schema.json"


def headings(page: str) -> list[str]:
    """The page's h1, h2 and h3, tags stripped: the sections it shows."""
    found = re.findall(r"<(h[123])[^>]*>(.*?)</\1>", page, flags=re.S)
    return [re.sub(r"<[^>]+>", "", text) for _, text in found]


def key_paths(node: Any, prefix: str = "") -> set[str]:
    """Every key of a JSON document as a dotted path (``[]`` for list items); ``spec`` is the job
    specification's own schema and is not walked."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            if path != "spec":
                out |= key_paths(value, path)
    elif isinstance(node, list):
        for value in node:
            out |= key_paths(value, prefix + "[]")
    return out


def test_every_committed_report_loads_and_renders_the_sections_it_rendered_before() -> None:
    recorded = json.loads((GOLDEN / "report_sections.json").read_text(encoding="utf-8"))["headings"]
    committed = {str(path.relative_to(ROOT)): path for path in COMMITTED}
    assert len(recorded) >= 100 and set(recorded) <= set(committed), "a recorded report is gone"
    # Reports committed after the recording (new runs) show one of the recorded layouts; the first
    # heading names the run's models and method, so it is left out of that comparison.
    layouts = {tuple(h[1:]) for h in recorded.values()}
    for name, path in committed.items():
        report = Report.load(path)
        assert report.schema_version == SCHEMA_VERSION and report.metrics is not None
        shown = headings(render_html(report))
        if name in recorded:
            assert shown == recorded[name], path
        else:
            assert tuple(shown[1:]) in layouts, (path, shown)


def test_every_committed_report_is_valid_under_the_published_schema() -> None:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
    for path in COMMITTED:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert not list(validator.iter_errors(migrate(data))), path
        assert not list(validator.iter_errors(Report.load(path).to_dict())), path


def test_the_committed_schema_is_the_models() -> None:
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == report_json_schema(), (
        "docs/report.schema.json is stale: write it again from gacd_core.report_model.report_json_schema()"
    )


def test_reports_from_before_schema_version_are_migrated() -> None:
    old = next(p for p in COMMITTED if "normalization" not in json.loads(p.read_text())["student"])
    data = json.loads(old.read_text())
    assert "schema_version" not in data and "split" not in data["protocol"]
    report = Report.load(old)
    assert report.schema_version == SCHEMA_VERSION
    assert report.protocol is not None and report.protocol.split == "test"
    assert report.dataset is not None and report.dataset.evaluated_split == "test"
    assert report.student is not None and report.student.normalization is None  # a key it lacked: null
    assert report.run_seconds == data["run_seconds"]  # what the benchmark script added is kept
    # What it held is kept: the migrated document has every key of the old one, with the same values.
    again = report.to_dict()
    assert key_paths(data) <= key_paths(again)
    assert all(again[k] == data[k] for k in ("metrics", "compression", "structure", "environment", "spec"))


def test_a_renamed_or_unknown_key_is_refused_not_dropped() -> None:
    data = json.loads(COMMITTED[0].read_text())
    data["metrics"]["pgd_20_acc"] = data["metrics"].pop("pgd20_acc")
    with pytest.raises(ValidationError, match="pgd_20_acc"):
        Report.from_dict(data)
    with pytest.raises(ValidationError, match="teacher_metric"):
        render_html({"teacher_metric": None})
    with pytest.raises(KeyError):
        Metrics().accuracy("pgd_20_acc")


def test_the_accuracies_are_the_catalogs() -> None:
    from gacd_core import catalog

    accuracies = [name for name in Metrics.model_fields if name.endswith("_acc")]
    assert accuracies == list(catalog.ACCURACY_KEYS)
    metrics = Metrics.model_validate({"clean_acc": 0.5, "pgd20_acc": 0.25})
    assert metrics.accuracy(catalog.REFERENCE_ATTACK.key) == 0.25
    assert metrics.accuracies()["clean_acc"] == 0.5 and metrics.accuracies()["cw_acc"] is None


def test_not_a_number_is_written_as_null() -> None:
    report = Report.from_dict({"metrics": {"clean_acc": float("nan")}, "structure": {"cka_adv": float("inf")}})
    data = json.loads(report.to_json())
    assert data["metrics"]["clean_acc"] is None and data["structure"]["cka_adv"] is None


def test_the_model_and_the_page_import_without_torch() -> None:
    code = (
        "import sys, gacd_core.report_model, gacd_core.report_html\n"
        "from gacd_core.report_model import report_json_schema\n"
        "report_json_schema()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_api_serves_the_schema_and_documents_it(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.launch.embedded import free_port
    from service.state.settings import Settings

    key = "schema-test-key-" + "s" * 16
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", api_keys=f"{key}=t", artifact_root=tmp_path / "artifacts"
    )
    client = TestClient(create_app(settings))
    assert client.get("/v1/schemas/report").status_code == 401
    got = client.get("/v1/schemas/report", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200 and got.json() == report_json_schema()
    operation = client.get("/openapi.json").json()["paths"]["/v1/schemas/report"]["get"]
    assert operation["operationId"] == "getReportSchema"
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "object"


def _tiny_chain(tmp: Path) -> dict[str, Path]:
    """The jobs whose keys tests/golden/report_keys.json recorded: at -> gacd -> evaluate, fake CIFAR-10."""
    from _fakes import make_cifar10

    from gacd_core.jobs import run_evaluation, run_job
    from gacd_core.spec import TeacherSpec, parse_spec

    make_cifar10(tmp / "data", n_train=40, n_test=20)
    common: dict[str, Any] = {
        "dataset": {"name": "cifar10", "root": str(tmp / "data")},
        "device": "cpu",
        "precision": "fp32",
        "evaluation": {"attacks": ["fgsm", "pgd20"], "eps_sweep": [0.0, 0.0313725], "batch_size": 20},
    }
    hyper = {"epochs": 1, "batch_size": 20, "attack": {"steps": 1}}
    teacher_doc = {"method": "at", "student": {"arch": "tiny_resnet"}, "hyperparameters": hyper, **common}
    run_job(parse_spec(teacher_doc), tmp / "at")
    teacher = {"weights": str(tmp / "at" / "student.safetensors"), "allow_weak": True}
    doc = {
        "method": "gacd",
        "teacher": teacher,
        "student": {"arch": "tiny_wrn"},
        "hyperparameters": {**hyper, "method_params": {"n_negatives": 8}},
        **common,
    }
    report = run_job(parse_spec(doc), tmp / "gacd")
    assert isinstance(report, Report) and report.kind == "distill"
    ev = parse_spec({**doc, "evaluation": {**common["evaluation"], "autoattack": True, "autoattack_subset": 4}})
    run_evaluation(tmp / "gacd" / "student.safetensors", tmp / "evaluate", ev, teacher=TeacherSpec(**teacher))
    return {name: tmp / name / "report.json" for name in ("at", "gacd", "evaluate")}


@pytest.mark.slow
def test_a_new_job_writes_the_keys_it_wrote_before_and_the_report_loads(tmp_path: Path) -> None:
    recorded = json.loads((GOLDEN / "report_keys.json").read_text(encoding="utf-8"))["key_paths"]
    for name, path in _tiny_chain(tmp_path).items():
        data = json.loads(path.read_text(encoding="utf-8"))
        assert list(data)[:2] == ["schema", "schema_version"] and data["schema_version"] == SCHEMA_VERSION
        assert sorted(key_paths(data) - {"schema_version"}) == recorded[name], name
        report = Report.load(path)
        assert report.to_dict() == data  # what was written is what loads
        page = (path.parent / "report.html").read_text(encoding="utf-8")
        assert page == render_html(report)
        assert "Metrics" in headings(page) and ("Teacher check (before anything ran)" in headings(page)) == (
            name != "at"
        )
