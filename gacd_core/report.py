"""``report.json`` and ``report.html``: what a job measured, with how and where it was measured.

Accuracies are fractions. Every report carries the resolved job specification, the protocol, the
environment (torch version, device, git commit) and, for training jobs, the per-epoch history.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import gacd_core
from gacd_core.artifacts import REPORT_HTML, REPORT_JSON
from gacd_core.report_html import render_html

SCHEMA = "gacd-report/1"


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


def environment(device: torch.device) -> dict[str, Any]:
    import torchvision

    return {
        "gacd_version": gacd_core.__version__,
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device.type,
        "device_name": device_name(device),
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null, tuples lists, tensors numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = _clean(report)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    for path, text in ((json_path, json.dumps(report, indent=2, allow_nan=False)), (html_path, render_html(report))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, html_path
