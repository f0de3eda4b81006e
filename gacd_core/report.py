"""Building and writing ``report.json`` and ``report.html``: what a job measured, with how and where it
was measured.

The report itself is :class:`~gacd_core.report_model.Report` (torch-free, with its JSON Schema). This
module holds what needs torch: the sections built from models, data and training results, the
environment probe (torch version, device, git commit), and the writer of both files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import gacd_core
from gacd_core.artifacts import REPORT_HTML, REPORT_JSON
from gacd_core.report_html import render_html
from gacd_core.report_model import (
    SCHEMA,
    Compression,
    DatasetSection,
    Environment,
    Metrics,
    Report,
    StudentSection,
    TeacherCheckSection,
    TeacherSection,
    Training,
)

if TYPE_CHECKING:
    from gacd_core.data import DatasetBundle
    from gacd_core.models import ImageClassifier
    from gacd_core.teacher_check import TeacherCheck
    from gacd_core.trainer import TrainResult


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    """``$GACD_GIT_COMMIT``, else the commit of the checkout the package runs from, else None.

    The checkout's commit is read once, when this module is first imported: a long-lived process runs
    the code it loaded then, whatever the checkout's HEAD has moved to since (a benchmark's runs
    outlive several commits).
    """
    env = os.environ.get("GACD_GIT_COMMIT")
    if env:
        return env
    return _COMMIT_AT_IMPORT


def _read_git_commit() -> str | None:
    here = Path(gacd_core.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return commit + ("-dirty" if dirty else "")


_COMMIT_AT_IMPORT = _read_git_commit()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def environment(device: torch.device, *, sync_batchnorm: bool = False) -> Environment:
    """The report's ``environment``: versions, the device and the commit of the code that ran, and the
    processes that ran it (:mod:`gacd_core.distributed`; ``sync_batchnorm``: the student trained with
    SyncBatchNorm)."""
    import torchvision

    from gacd_core import distributed

    return Environment(
        gacd_version=gacd_core.__version__,
        git_commit=git_commit(),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        cuda=torch.version.cuda if device.type == "cuda" else None,
        python=platform.python_version(),
        platform=platform.platform(),
        device=device.type,
        device_name=device_name(device),
        world_size=distributed.world_size(),
        sync_batchnorm=sync_batchnorm,
    )


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def metrics_section(metrics: dict[str, Any]) -> Metrics | None:
    """A model's protocol figures as the report keeps them (None when nothing was measured: a teacher
    across tasks, whose accuracy on the student's labels means nothing)."""
    return Metrics.model_validate(metrics) if metrics else None


def _model_fields(model: ImageClassifier, params: int | None, macs: int | None) -> dict[str, Any]:
    fields = {
        "arch": model.arch,
        "params": params,
        "macs": macs,
        "num_classes": model.num_classes,
        "mean": list(model.mean),
        "std": list(model.std),
        "normalization": model.normalization(),
    }
    return {**fields, **model_origin(model)}


def model_origin(model: ImageClassifier) -> dict[str, Any]:
    """Where a library or zoo model comes from (source, licence), the side it is built for and the
    side it resized from: the keys reports and teacher records add (none for our own architectures)."""
    prov = model.provenance
    out = {
        "source": prov.get("source"),
        "input_size": model.input_size,
        "resized_from": model.resized_from if model.resized_from != model.input_size else None,
        "licence": prov.get("licence"),
        "licence_note": prov.get("licence_note"),
        "non_commercial": prov.get("non_commercial") if prov else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def student_section(student: ImageClassifier, comp: Compression, weights: Path) -> StudentSection:
    """The report's ``student``: the model, its size and its weights file (name and SHA-256)."""
    fields = _model_fields(student, comp.student_params, comp.student_macs)
    return StudentSection.model_validate({**fields, "file": weights.name, "sha256": sha256_file(weights)})


def teacher_section(teacher: ImageClassifier, comp: Compression, check: TeacherCheck | None) -> TeacherSection:
    """The report's ``teacher``, with what the teacher check measured before anything ran."""
    fields = _model_fields(teacher, comp.teacher_params, comp.teacher_macs)
    checked = TeacherCheckSection.model_validate(check.to_dict()) if check is not None else None
    return TeacherSection.model_validate({**fields, "check": checked})


def dataset_section(data: DatasetBundle, test_size: int, split: str) -> DatasetSection:
    """The report's ``dataset``; ``test_size`` is the number of images the protocol ran on."""
    return DatasetSection.model_validate({**data.describe(), "test_size": test_size, "evaluated_split": split})


def training_section(result: TrainResult | None) -> Training | None:
    """The report's ``training`` (None for an evaluation)."""
    if result is None:
        return None
    return Training.model_validate(
        {
            "epochs": result.epochs,
            "seconds": result.seconds,
            "images_per_second": result.images_per_second,
            "resumed_from_epoch": result.resumed_from_epoch,
            "fast_path": result.fast_path,
            "history": result.history,
        }
    )


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (each replaced atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    for path, text in ((json_path, report.to_json()), (html_path, render_html(report))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, html_path


__all__ = [
    "SCHEMA",
    "dataset_section",
    "environment",
    "git_commit",
    "metrics_section",
    "now",
    "sha256_file",
    "student_section",
    "teacher_section",
    "training_section",
    "write_report",
]
