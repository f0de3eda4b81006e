"""The README's promises: its curl sequence works against `gacd serve`, and its settings table is complete."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _fakes import make_cifar10

from service.state.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def curl_block() -> str:
    marker = README.index("<!-- curl-sequence")
    start = README.index("```sh\n", marker) + len("```sh\n")
    return README[start : README.index("```", start)]


@pytest.mark.unit
def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"`(GACD_[A-Z_]+)`", README))
    fields = {f"GACD_{name.upper()}" for name in Settings.model_fields}
    assert fields <= documented, sorted(fields - documented)
    assert documented - fields <= {"GACD_URL", "GACD_API_KEY", "GACD_DATA_ROOT"}, sorted(documented - fields)


@pytest.mark.api
@pytest.mark.worker
@pytest.mark.e2e
def test_the_curl_sequence_runs_against_gacd_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # Learnable images (each class a colour): the README's `at` teacher must pass the teacher check that
    # registering it and distilling from it run; on noise with random labels every teacher is at chance.
    make_cifar10(data, n_train=512, n_test=30, learnable=True)
    serve = subprocess.Popen(
        [sys.executable, "-m", "gacd_core.cli", "serve", "--port", "0", "--data-root", str(data), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline and serve.stdout is not None:
            line = serve.stdout.readline()
            if not line and serve.poll() is not None:
                break
            if line.startswith("GACD service at "):
                url = line.split()[3]
        assert url, "gacd serve did not start"
        script = "set -eu\n" + curl_block().replace("http://127.0.0.1:8000", url)
        out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        serve.send_signal(2)
        serve.wait(timeout=60)
    lines = out.stdout.splitlines()
    assert any(re.match(r"jobs/job_\w+: succeeded", ln) for ln in lines), out.stdout
    assert any(re.match(r"teachers/tch_\w+: ready", ln) for ln in lines), out.stdout
    events = [ln.split(": ", 1)[1] for ln in lines if ln.startswith("event: ")]
    assert events[0] == "queued" and events[-2:] == ["succeeded", "end"] and events.count("epoch") == 2, events
    assert '"name":"student.safetensors"' in out.stdout.replace(" ", "")
    assert (tmp_path / "student.safetensors").stat().st_size > 10_000
    assert "<svg" in (tmp_path / "report.html").read_text()
