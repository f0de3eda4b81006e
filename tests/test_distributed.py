"""One job in several processes (issue 27), on the CPU with gloo and two processes.

The processes are started twice per module, each time once for all the tests that read them: the
checks of ``_distributed_ranks.py`` under torchrun (steps, memory banks, pause and resume, stop,
evaluation), compared here with one process computing the same; and ``gacd train --processes 2`` as a
user runs it, straight and then stopped by SIGINT after its first epoch and run again. Refusals need no
processes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _distributed_ranks as R
import pytest
import torch
from _fakes import make_cifar10

from gacd_core import launch
from gacd_core.errors import SpecError
from gacd_core.progress import EpochCompleted, EvalProgress, Stage, StageChanged, TrainingStarted
from gacd_core.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "tests"), "PYTHONWARNINGS": "ignore"}
GACD = [sys.executable, "-m", "gacd_core.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


# --------------------------------------------------------------------------------------------------
# Refusals: no process started
# --------------------------------------------------------------------------------------------------
def _refused(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        parse_spec({"method": "at", **doc})
    return err.value.errors


@pytest.mark.unit
def test_a_batch_that_does_not_split_or_syncbatchnorm_on_the_cpu_is_refused_naming_the_field():
    [(field, message)] = _refused({"resources": {"processes": 2}, "hyperparameters": {"batch_size": 7}})
    assert field == "hyperparameters.batch_size" and "7" in message and "multiple of 2" in message
    [(field, message)] = _refused({"resources": {"processes": 2, "sync_batchnorm": True}})
    assert field == "resources.sync_batchnorm" and "CUDA" in message
    [(field, _)] = _refused({"resources": {"gpus": 2, "sync_batchnorm": True}, "device": "cpu"})
    assert field == "resources.gpus"
    [(field, message)] = _refused({"resources": {"gpus": 2, "processes": 2}})
    assert field == "resources.processes" and "not both" in message
    [(field, _)] = _refused({"resources": {"processes": 2}, "device": "cuda"})
    assert field == "resources.processes"
    ok = parse_spec({"method": "at", "resources": {"processes": 4}, "hyperparameters": {"batch_size": 128}})
    assert ok.resources.world_size == 4 and parse_spec({"method": "at"}).resources.world_size == 1


@pytest.mark.unit
def test_the_command_line_names_the_flag_and_a_job_outside_torchrun_is_refused(tmp_path, capsys):
    from gacd_core.cli import main
    from gacd_core.jobs import run_job

    code = main(["train", "--processes", "2", "--batch-size", "7", "--out", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 2 and "hyperparameters.batch_size (--batch-size)" in capsys.readouterr().err
    with pytest.raises(SpecError, match="asks for 2 processes but runs in 1") as err:
        run_job(parse_spec({"method": "at", "resources": {"processes": 2}}), tmp_path / "o")
    assert err.value.field == "resources" and not (tmp_path / "o").exists()


@pytest.mark.unit
def test_the_service_does_not_take_resources_yet():
    from service.api.contract import job_schemas, parse_job

    with pytest.raises(SpecError) as err:
        parse_job({"method": "natural", "resources": {"gpus": 2}})
    assert err.value.field == "resources" and "one process" in err.value.message
    assert "resources" not in json.dumps(job_schemas())  # nor does its contract document it


@pytest.mark.unit
def test_progress_events_go_through_the_events_file_and_come_back_equal():
    events = [
        TrainingStarted(1, 2, 0, 5, 0, 10, math.nan, {}, 0.1, 0.0, math.nan),
        EpochCompleted(1, 2, 5, 5, 5, 10, 1.5, {"ce": 1.5}, 0.1, 100.0, 3.0, record={"epoch": 1, "loss": 1.5}),
        StageChanged(Stage.EVALUATING_STUDENT, 0.5),
        EvalProgress("pgd20", 0.25, 3.0, 1.0, "student"),
    ]
    back = [launch.event_of(json.loads(json.dumps(launch.record(e)))) for e in events]
    assert back[1:] == events[1:] and isinstance(back[2], StageChanged) and back[2].stage is Stage.EVALUATING_STUDENT
    assert math.isnan(back[0].loss) and back[0].global_step == 0  # NaN is not equal to itself


# --------------------------------------------------------------------------------------------------
# Two processes under torchrun, started once
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ranks")
    run = subprocess.run(
        [*TORCHRUN, str(ROOT / "tests" / "_distributed_ranks.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=ENV,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(R.STEP_CASES))
def test_a_step_on_two_slices_is_the_step_of_one_process_on_the_global_batch(ranks, case):
    assert [r["rows"] for r in ranks] == [slice(0, 4), slice(4, 8)]
    one = R.one_step(case, slice(None))  # this process: one process, the whole batch
    for r in ranks:
        assert _max_diff(r["steps"][case], one) < 1e-5
    a, b = ranks[0]["steps"][case], ranks[1]["steps"][case]
    assert all(torch.equal(a[k], b[k]) for k in a), "the processes hold different models or banks"
    before = R.state(R.trainer(case))
    assert _max_diff(one, before) > 1e-3  # the step moved the weights: the equality above says something


@pytest.mark.slow
def test_memory_banks_stay_identical_on_every_process_and_equal_one_processs(ranks):
    bank = "extras.contrast.memory"
    one = R.one_step("gacd-memory", slice(None))[bank]
    first, second = (r["steps"]["gacd-memory"][bank] for r in ranks)
    assert torch.equal(first, second) and float((first - one).abs().max()) < 1e-6
    _, _, idx = R.global_batch()
    moved = (one[idx] - R.state(R.trainer("gacd-memory"))[bank][idx]).abs().amax(1)
    assert float(moved.min()) > 0  # every row of the batch moved
    after = [r["straight"][bank] for r in ranks]  # after two epochs of training
    assert torch.equal(after[0], after[1])
    assert all(torch.equal(ranks[0]["straight"][k], ranks[1]["straight"][k]) for k in ranks[0]["straight"])


@pytest.mark.slow
def test_a_pause_asked_by_one_process_pauses_all_and_resuming_is_exact(ranks):
    assert [r["paused_at"] for r in ranks] == [(2, 2), (2, 2)]  # only rank 1 asked, before step 3 of epoch 2
    for r in ranks:
        assert [k for k in r["straight"] if not torch.equal(r["straight"][k], r["resumed"][k])] == []
        same = ("epoch", "lr", "loss", "loss_parts", "train_acc")  # not the seconds
        assert [{k: e[k] for k in same} for e in r["resumed_history"]] == [
            {k: e[k] for k in same} for e in r["straight_history"]
        ]
    assert [r["stopped_at"] for r in ranks] == [(1, 3), (1, 3)]  # a stop too: together, at one step


@pytest.mark.slow
def test_the_evaluation_shared_by_two_processes_is_one_processs_image_by_image(ranks):
    one = R.evaluated(ranks[0]["evaluated_model"])
    bits = one.extra["per_image"]
    for r in ranks:  # every process holds every image's results, in the original order
        got = r["evaluation"]
        for name, row in bits["correct"].items():
            assert torch.equal(got["bits"]["correct"][name], row), name
        assert torch.equal(got["logits"], one.clean_logits) and torch.equal(got["feats"], one.clean_feats)
        assert torch.equal(got["adv"], one.adv_inputs)  # filled by one process each, summed into place
        for key in ("clean_acc", "fgsm_acc", "pgd20_acc", "eps_sweep", "per_class"):
            assert got["metrics"][key] == one.metrics[key], key
        aa = got["bits"]["autoattack"]  # two shares of two images, each its own AutoAttack run
        assert len(aa) == 4 and got["metrics"]["autoattack_acc"] == float(aa.float().mean())
    m = one.metrics
    assert m["clean_acc"] > m["fgsm_acc"] > 0 and m["pgd20_acc"] < m["clean_acc"]  # the attacks change answers


# --------------------------------------------------------------------------------------------------
# gacd train --processes 2, as a user runs it
# --------------------------------------------------------------------------------------------------
def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        *GACD, "train", "--method", "at", "--arch", "tiny_resnet", "--data-root", str(data), "--epochs", "3",
        "--batch-size", "8", "--device", "cpu", "--precision", "fp32", "--quiet", "--out", str(out),
        "--set", "hyperparameters.attack.steps=1", "--set", "evaluation.attacks=[fgsm,pgd20]",
        "--set", "evaluation.eps_sweep=[0.0]", "--set", "evaluation.batch_size=8", *extra,
    ]  # fmt: skip


def _key_paths(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    out = set()
    for k, v in node.items():
        path = f"{prefix}.{k}" if prefix else k
        out |= {path} | (_key_paths(v, path) if path != "spec" else set())
    return out


def _processes_of(out: Path) -> list[int]:
    """The processes whose command line names ``out`` (the job's ranks, torchrun, the command)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(out) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def cli_jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same tiny job: in two processes straight; in two processes stopped by SIGINT once its first
    epoch's checkpoint is written, then the same command again; and in one process."""
    base = tmp_path_factory.mktemp("cli")
    make_cifar10(base / "data", n_train=40, n_test=20)
    done: dict[str, Any] = {"base": base}
    straight = subprocess.run(_train_args(base / "data", base / "two", "--processes", "2"), **_run_kw())
    assert straight.returncode == 0, straight.stderr[-4000:]
    done["two"] = straight
    stopped = base / "stopped"
    proc = subprocess.Popen(_train_args(base / "data", stopped, "--processes", "2"), **_popen_kw())
    deadline = time.monotonic() + 600
    while not (stopped / "checkpoint.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    done["interrupted"] = (proc.returncode, err, _processes_of(stopped))
    done["again"] = subprocess.run(_train_args(base / "data", stopped, "--processes", "2"), **_run_kw())
    done["one"] = subprocess.run(_train_args(base / "data", base / "one"), **_run_kw())
    return done


def _run_kw() -> dict[str, Any]:
    return {"capture_output": True, "text": True, "timeout": 900, "env": ENV, "cwd": ROOT}


def _popen_kw() -> dict[str, Any]:
    return {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True, "env": ENV, "cwd": ROOT}


@pytest.mark.slow
@pytest.mark.e2e
def test_gacd_train_with_two_processes_writes_the_report_of_one_with_world_size_2(cli_jobs):
    base = cli_jobs["base"]
    assert cli_jobs["one"].returncode == 0, cli_jobs["one"].stderr[-3000:]
    two = json.loads((base / "two" / "report.json").read_text())
    one = json.loads((base / "one" / "report.json").read_text())
    assert _key_paths(two) == _key_paths(one)  # the same form
    assert two["environment"]["world_size"] == 2 and one["environment"]["world_size"] == 1
    assert two["spec"]["resources"] == {"gpus": None, "processes": 2, "sync_batchnorm": False}
    assert two["environment"]["sync_batchnorm"] is False
    assert len(two["training"]["history"]) == 3 and two["dataset"]["test_size"] == 20
    assert sorted(p.name for p in (base / "two").iterdir()) == sorted(p.name for p in (base / "one").iterdir())
    assert "wrote" in cli_jobs["two"].stdout  # rank 0's summary, once
    assert cli_jobs["two"].stdout.count("student (tiny_resnet)") == 1


@pytest.mark.slow
@pytest.mark.e2e
def test_sigint_stops_every_process_and_the_same_command_resumes_exactly(cli_jobs):
    code, err, left = cli_jobs["interrupted"]
    assert code == 130 and "run the same command to continue" in err, err[-3000:]
    assert left == [], f"processes left behind: {left}"
    again = cli_jobs["again"]
    assert again.returncode == 0, again.stderr[-3000:]
    base = cli_jobs["base"]
    report = json.loads((base / "stopped" / "report.json").read_text())
    assert report["training"]["resumed_from_epoch"] in (1, 2, 3)  # the stop landed in epoch 2, 3 or the evaluation
    # the same weights, bit for bit, as the run that was never stopped (the file holds no timestamp)
    weights = [(base / name / "student.safetensors").read_bytes() for name in ("stopped", "two")]
    assert weights[0] == weights[1]
