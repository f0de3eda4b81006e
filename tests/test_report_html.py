"""Tests of the self-contained HTML report (``gacd_core.report_html``)."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from gacd_core.report_html import render_html

pytestmark = pytest.mark.unit

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
EVIL = "<script>alert(1)</script>"
VOID_TAGS = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}


class _TagChecker(HTMLParser):
    """Records tag-nesting errors: closing tags that do not match the open one, and unclosed tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.svg_count = 0
        self.text: list[str] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svg_count += 1
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag not in VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _TagChecker:
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    return checker


def _assert_well_formed(page: str) -> _TagChecker:
    checker = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert checker.errors == []
    assert checker.stack == []
    return checker


def _metrics(clean: float, pgd: float, aa: float | None, n_classes: int, shift: float) -> dict[str, Any]:
    return {
        "clean_acc": clean,
        "fgsm_acc": pgd + 0.06,
        "pgd20_acc": pgd,
        "cw_acc": pgd - 0.02,
        "autoattack_acc": aa,
        "autoattack_breakdown": None
        if aa is None
        else {"clean": clean, "apgd-ce": pgd, "apgd-t": aa + 0.01, "fab-t": aa + 0.005, "square": aa},
        "per_class": {
            "clean": [round(0.6 + shift + 0.03 * (i % 10), 4) for i in range(n_classes)],
            "pgd20": [round(0.3 + shift + 0.025 * (i % 10), 4) for i in range(n_classes)],
        },
        "eps_sweep": [
            {"eps": 0.0, "acc": clean},
            {"eps": 2 / 255, "acc": clean - 0.12},
            {"eps": 4 / 255, "acc": pgd + 0.08},
            {"eps": 8 / 255, "acc": pgd},
            {"eps": 16 / 255, "acc": pgd - 0.25},
        ],
        "seconds": 12.3,
    }


def _history(epochs: int) -> list[dict[str, Any]]:
    return [
        {
            "epoch": e,
            "lr": 0.1 / e,
            "loss": 2.1 - 0.3 * e,
            "loss_parts": {"nce": 1.0 - 0.1 * e, "kd": 1.1 - 0.2 * e},
            "train_acc": 0.3 + 0.1 * e,
            "val_clean_acc": 0.35 + 0.1 * e,
            "val_pgd_acc": 0.2 + 0.05 * e if e > 1 else None,
            "seconds": 33.0,
            "images_per_second": 500.0,
        }
        for e in range(1, epochs + 1)
    ]


@pytest.fixture()
def report() -> dict[str, Any]:
    """A full distillation report: 10 classes, 3 epochs, teacher metrics and AutoAttack."""
    return {
        "schema": "gacd-report/1",
        "kind": "distill",
        "method": "gacd",
        "created_at": "2026-11-23T20:01:02Z",
        "spec": {
            "method": "gacd",
            "student": {"arch": "mobilenetv2"},
            "train": {"epochs": 3, "lr": 0.1, "note": "<img src=x onerror=alert(1)>"},
        },
        "student": {
            "arch": "mobilenetv2",
            "params": 2296922,
            "macs": 91200000,
            "num_classes": 10,
            "file": "student.safetensors",
            "sha256": "ab12cd34" * 8,
        },
        "teacher": {"arch": "resnet18", "params": 11173962, "macs": 555400000, "num_classes": 10},
        "dataset": {
            "name": "cifar10",
            "num_classes": 10,
            "class_names": list(CLASS_NAMES),
            "train_size": 50000,
            "test_size": 10000,
            "val_size": 0,
            "image_size": 32,
            "classes": None,
        },
        "protocol": {
            "eps": 0.03137,
            "norm": "Linf",
            "attacks": ["fgsm", "pgd20", "cw"],
            "attack_params": {
                "fgsm": {"steps": 1, "step_size": 0.03137},
                "pgd20": {"steps": 20, "step_size": 0.00784, "random_start": True},
                "cw": {"steps": 30, "step_size": 0.00784, "kappa": 50.0},
                "autoattack": {
                    "version": "standard",
                    "attacks": ["apgd-ce", "apgd-t", "fab-t", "square"],
                    "package": "pyautoattack 0.2.0",
                },
            },
            "test_size": 10000,
            "autoattack_size": 1000,
            "precision": "fp32",
            "seed": 0,
        },
        "metrics": _metrics(0.8123, 0.4937, 0.4412, 10, 0.0),
        "teacher_metrics": _metrics(0.8431, 0.5218, 0.4786, 10, 0.05),
        "agreement": {"clean": 0.9, "adv": 0.7},
        "structure": {"cka_clean": 0.8, "cka_adv": 0.7, "logit_corr_diff": 0.05, "logit_corr_diff_adv": 0.07},
        "compression": {
            "teacher_params": 11173962,
            "student_params": 2296922,
            "params_ratio": 4.86,
            "teacher_macs": 555400000,
            "student_macs": 91200000,
            "macs_ratio": 6.09,
            "teacher_images_per_second": 1500.0,
            "student_images_per_second": 4000.0,
            "speedup": 2.67,
            "device": "cuda",
            "batch_size": 256,
        },
        "training": {
            "epochs": 3,
            "seconds": 100.0,
            "images_per_second": 500.0,
            "resumed_from_epoch": None,
            "history": _history(3),
        },
        "environment": {
            "torch": "2.14.1",
            "python": "3.11.7",
            "platform": "Linux-6.1-x86_64",
            "device": "cuda",
            "device_name": "NVIDIA H100",
            "git_commit": "abc123def",
            "gacd_version": "0.1.0",
        },
    }


@pytest.fixture()
def minimal_report(report: dict[str, Any]) -> dict[str, Any]:
    """A train job with no teacher, no AutoAttack, no per-class figures and an empty history."""
    minimal = copy.deepcopy(report)
    minimal.update(
        kind="train",
        method="at",
        teacher=None,
        teacher_metrics=None,
        agreement=None,
        structure=None,
        compression=None,
    )
    minimal["metrics"].update(autoattack_acc=None, autoattack_breakdown=None, per_class=None, eps_sweep=None)
    minimal["training"]["history"] = []
    return minimal


def _headline(page: str) -> str:
    match = re.search(r'<section class="headline".*?</section>', page, flags=re.S)
    assert match is not None
    return match.group(0)


def test_full_report_is_well_formed_self_contained_html(report: dict[str, Any]) -> None:
    page = render_html(report)
    checker = _assert_well_formed(page)
    assert checker.svg_count >= 3
    assert page.count("<svg") >= 3
    # Self-contained: no scripts, no external stylesheets, images, frames or fonts.
    assert not checker.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert not checker.attributes & {"src", "href", "onload", "onerror"}
    style = page[page.index("<style>") : page.index("</style>")]
    assert "@import" not in style and "url(" not in style and "@font-face" not in style


def test_headline_shows_student_and_teacher_figures_as_percentages(report: dict[str, Any]) -> None:
    headline = _headline(render_html(report))
    for value in ("81.2%", "49.4%", "44.1%"):  # student clean, PGD-20, AutoAttack
        assert value in headline
    for value in ("84.3%", "52.2%", "47.9%"):  # teacher beside each
        assert value in headline
    assert "−2.8 pp" in headline  # PGD-20 gap, 49.37 - 52.18
    assert "4.86×" in headline
    assert "2.67×" in headline
    assert "AutoAttack accuracy" in headline


def test_charts_cover_training_eps_sweep_and_classes(report: dict[str, Any]) -> None:
    page = render_html(report)
    assert "Training loss" in page
    assert "Accuracy during training" in page
    assert "Accuracy versus ε" in page
    assert "Per-class accuracy" in page
    assert ">8/255<" in page  # eps sweep axis in units of 1/255
    assert ">16/255<" in page
    assert "nce" in page and "kd" in page  # loss parts in the legend
    # One bar per (class, series): student and teacher, clean and PGD-20, all 10 classes.
    assert len(re.findall(r"<rect [^>]*><title>[^<]* · (?:student|teacher) (?:clean|PGD-20):", page)) == 40


def test_tables_footer_and_spec(report: dict[str, Any]) -> None:
    page = render_html(report)
    text = "".join(_parse(page).text)
    assert "Protocol:" in text and "Provenance:" in text
    footer = page[page.index('<footer class="footer">') :]
    for needle in (
        "8/255",
        "PGD-20",
        "10,000 test images",
        "abc123def",
        "2.14.1",
        "NVIDIA H100",
        "2026-11-23T20:01:02Z",
    ):
        assert needle in footer
    assert "<details>" in page and "&quot;epochs&quot;: 3" in page  # spec as pretty JSON
    assert "11,173,962" in page and "2,296,922" in page  # compression table
    assert "0.800" in page  # CKA


def test_strings_from_the_report_are_escaped(report: dict[str, Any]) -> None:
    report["dataset"]["class_names"][3] = EVIL
    report["method"] = "<b>bold</b>"
    report["environment"]["platform"] = '"><svg onload=alert(1)>'
    page = render_html(report)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<svg onload" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    checker = _assert_well_formed(page)
    assert EVIL in "".join(checker.text)  # shown as text


def test_minimal_report_renders(minimal_report: dict[str, Any]) -> None:
    page = render_html(minimal_report)
    _assert_well_formed(page)
    assert "evaluation only" in page
    assert "Per-class accuracy" not in page
    assert "teacher" not in _headline(page)
    assert "AutoAttack accuracy" not in _headline(page)
    assert "49.4%" in _headline(page)
    assert "2.30 M" in _headline(page)  # student size when there is no compression block


def test_evaluate_report_with_nulls_everywhere_renders(minimal_report: dict[str, Any]) -> None:
    minimal_report.update(kind="evaluate", method=None, training=None, spec=None)
    minimal_report["metrics"].update(cw_acc=None, fgsm_acc=float("nan"), seconds=None)
    minimal_report["environment"]["git_commit"] = None
    del minimal_report["structure"]
    page = render_html(minimal_report)
    _assert_well_formed(page)
    assert "No training (evaluation only)" in page
    assert "—" in page


def test_empty_report_renders() -> None:
    _assert_well_formed(render_html({}))


def test_one_epoch_history_draws_points(report: dict[str, Any]) -> None:
    report["training"]["history"] = _history(1)
    page = render_html(report)
    _assert_well_formed(page)
    assert "Training loss" in page
    assert re.search(r"<circle [^>]*><title>total loss · epoch 1: 1\.8</title>", page)


def test_hundred_classes_render_legibly(report: dict[str, Any]) -> None:
    names = [f"class_{i:03d}" for i in range(100)]
    report["dataset"].update(num_classes=100, class_names=names)
    for key in ("metrics", "teacher_metrics"):
        report[key]["per_class"] = _metrics(0.6, 0.3, None, 100, 0.0)["per_class"]
    page = render_html(report)
    _assert_well_formed(page)
    for name in names:
        assert f">{name}</text>" in page
    assert '<div class="scroll"><svg' in page  # wide chart in a scrolling box
    assert "rotate(-45" in page  # class labels turned to fit


def test_the_stylesheet_is_package_data_with_the_charts_colours() -> None:
    import tomllib
    from importlib.resources import files
    from pathlib import Path

    from gacd_core.report_html import charts

    css = (files("gacd_core.report_html") / "report.css").read_text(encoding="utf-8")
    root = dict(re.findall(r"--([a-z-]+): (#[0-9a-f]{6})", css[: css.index("}")]))
    assert root["student"] == charts.STUDENT and root["student-light"] == charts.STUDENT_LIGHT
    assert root["teacher"] == charts.TEACHER and root["teacher-light"] == charts.TEACHER_LIGHT
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert "report.css" in pyproject["tool"]["setuptools"]["package-data"]["gacd_core.report_html"]


# The sections (h1, h2, h3) the page showed for these fixtures when it read the report as a dictionary
# (commit 95a1245), before the report was typed.
SECTIONS_BEFORE = {
    "full": [
        "mobilenetv2 distilled from resnet18 with GACD", "Charts", "Training loss", "Accuracy during training",
        "Learning rate", "Accuracy under attack", "Accuracy versus ε", "Per-class accuracy", "Details", "Metrics",
        "Protocol", "Structure (student vs teacher)", "Compression", "Models", "Dataset", "Training", "Environment",
        "Job specification",
    ],
    "minimal": [
        "mobilenetv2 trained with AT", "Charts", "Training curves", "Accuracy under attack", "Details", "Metrics",
        "Protocol", "Models", "Dataset", "Training", "Environment", "Job specification",
    ],
    "empty": ["—", "Charts", "Training curves", "Details", "Metrics", "Protocol", "Models", "Dataset", "Training",
              "Environment"],
}  # fmt: skip


def _sections(page: str) -> list[str]:
    found = re.findall(r"<(h[123])[^>]*>(.*?)</\1>", page, flags=re.S)
    return [re.sub(r"<[^>]+>", "", text) for _, text in found]


def test_the_page_shows_the_sections_it_showed_before(report: dict[str, Any], minimal_report: dict[str, Any]) -> None:
    from gacd_core.report_model import Report

    for name, doc in (("full", report), ("minimal", minimal_report), ("empty", {})):
        typed = Report.from_dict(doc)
        assert _sections(render_html(typed)) == SECTIONS_BEFORE[name], name
        assert render_html(typed) == render_html(doc)  # a dictionary is read through the model
