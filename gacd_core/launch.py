"""Jobs of several processes: how they are started, and what each process runs.

``gacd train --processes N`` (or ``--gpus N``, and the same for ``gacd distill``) writes the job's
specification to a file and starts ``python -m torch.distributed.run --standalone --nproc_per_node=N -m
gacd_core.launch --spec FILE --out DIR ...`` (:func:`command`) as a child in its own process group
(:func:`run_launched`): SIGINT and SIGTERM received by the command are sent on to that group as SIGTERM,
and the command returns the job's exit status. torchrun sends SIGTERM on to the processes it started
(and SIGKILL 30 s later to those still running); each of them (:func:`rank_main`) runs
:func:`gacd_core.jobs.run_job` in the job's process group, and a SIGTERM makes all of them stop together
at the next step (:func:`gacd_core.distributed.agree`).

What a caller that supervises the job (the service's worker, issue 27's second part) has here, beside
the command: ``--events FILE``, where rank 0 appends every progress event as a JSON line (:func:`record`;
:func:`event_of` reads one back) and, last, the job's outcome (:func:`outcome`); ``--control DIR``, whose
files ``stop`` and ``pause`` ask every process to stop, or to pause after a checkpoint at the current step
(any process that sees one, all do); and SIGTERM to the group, which stops the job. A process whose
parent (torchrun) dies gets SIGTERM too (Linux), so no process is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gacd_core.progress import (
    EpochCompleted,
    EvalProgress,
    ProgressEvent,
    Stage,
    StageChanged,
    TrainingStarted,
    TrainingStep,
)

EVENTS = {cls.__name__: cls for cls in (TrainingStarted, TrainingStep, EpochCompleted, StageChanged, EvalProgress)}
OUTCOME = "outcome"  # the ``event`` of the last record of an events file
CONTROL_POLL_SECONDS = 0.25  # how often a process looks at the control folder for stop and pause
EXIT = {"done": 0, "error": 2, "stopped": 130, "paused": 130}  # the command's exit status for each outcome


def command(
    spec_file: Path,
    out: Path,
    nproc: int,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    quiet: bool = False,
    events: Path | None = None,
    control: Path | None = None,
) -> list[str]:
    """The command line that runs the job of ``spec_file`` in ``nproc`` processes on this machine."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    argv += ["-m", "gacd_core.launch", "--spec", str(spec_file), "--out", str(out)]
    for flag, value in (("--checkpoint-dir", checkpoint_dir), ("--events", events), ("--control", control)):
        if value is not None:
            argv += [flag, str(value)]
    return argv + (["--no-resume"] if not resume else []) + (["--quiet"] if quiet else [])


def run_launched(argv: list[str]) -> tuple[int, bool]:
    """Run ``argv`` as a child in its own process group, sending SIGINT and SIGTERM received meanwhile on
    to the group as SIGTERM. Returns its exit status (a signal's as 128 + its number) and whether a
    signal was sent on."""
    proc = subprocess.Popen(argv, start_new_session=True)
    sent: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        sent.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    before = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    return (128 - code if code < 0 else code), bool(sent)


def launch_job(spec: Any, out: Path, *, resume: bool = True, quiet: bool = False) -> int:
    """Run ``spec`` (a :class:`~gacd_core.spec.JobSpec` of several processes) from the command line: in
    :func:`command`'s processes, with a temporary specification file and events file. Returns the exit
    status of the outcome (:data:`EXIT`; torchrun's own when rank 0 left none, 130 when interrupted).

    Raises:
        SpecError: (``resources.gpus``) more GPUs than this machine has.
    """
    import tempfile

    from gacd_core.errors import SpecError

    gpus = spec.resources.gpus or 0
    if gpus > 1:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if have < gpus:
            raise SpecError([("resources.gpus", f"{gpus} GPUs were asked for; this machine has {have}")])
    with tempfile.TemporaryDirectory(prefix="gacd-job-") as tmp:
        spec_file, events = Path(tmp) / "spec.json", Path(tmp) / "events.jsonl"
        spec_file.write_text(json.dumps(spec.public_dict()), encoding="utf-8")
        argv = command(spec_file, out, spec.resources.world_size, resume=resume, quiet=quiet, events=events)
        code, interrupted = run_launched(argv)
        result = outcome(events)
    if interrupted:
        return EXIT["stopped"]
    return code if result is None else EXIT[result["status"]]


# --------------------------------------------------------------------------------------------------
# The events file
# --------------------------------------------------------------------------------------------------
def record(event: ProgressEvent) -> dict[str, Any]:
    """A progress event as JSON-ready data: its type's name under ``event``, its fields."""
    return {"event": type(event).__name__, **dataclasses.asdict(event)}


def event_of(data: dict[str, Any]) -> ProgressEvent:
    """The progress event a :func:`record` holds."""
    fields = {k: v for k, v in data.items() if k != "event"}
    cls = EVENTS[data["event"]]
    if cls is StageChanged:
        fields["stage"] = Stage(fields["stage"])
    event: ProgressEvent = cls(**fields)
    return event


def outcome(events: Path) -> dict[str, Any] | None:
    """The job's outcome, the last record of an events file: ``status`` (done, stopped, paused, error)
    and, for an error, its ``code``, ``message`` and ``field``; None when rank 0 wrote none (it died)."""
    with contextlib.suppress(OSError):
        lines = events.read_text(encoding="utf-8").splitlines()
        last = json.loads(lines[-1]) if lines else None
        if isinstance(last, dict) and last.get("event") == OUTCOME:
            return last
    return None


class _Events:
    """Rank 0's events file, one JSON line per event, flushed as written."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115  (open for the whole job)

    def write(self, data: dict[str, Any]) -> None:
        self.file.write(json.dumps(data) + "\n")
        self.file.flush()

    def progress(self, event: ProgressEvent) -> None:
        self.write(record(event))


# --------------------------------------------------------------------------------------------------
# Each process
# --------------------------------------------------------------------------------------------------
class _Requests:
    """Stop and pause requests reaching this process: SIGTERM (stop), and the files ``stop`` and ``pause``
    of the control folder. The callbacks are polled before every forward pass of an attack, so the
    folder is looked at no more often than every :data:`CONTROL_POLL_SECONDS` (the answer is kept between)."""

    def __init__(self, control: Path | None) -> None:
        self.control, self.terminated = control, False
        self._seen: dict[str, bool] = {}
        self._looked = -float("inf")
        signal.signal(signal.SIGTERM, self._terminate)

    def _terminate(self, _signum: int, _frame: Any) -> None:
        self.terminated = True

    def _asked(self, name: str) -> bool:
        if self.control is None:
            return False
        now = time.monotonic()
        if now - self._looked >= CONTROL_POLL_SECONDS:
            self._looked = now
            self._seen = {n: (self.control / n).exists() for n in ("stop", "pause")}
        return self._seen.get(name, False)

    def stop(self) -> bool:
        return self.terminated or self._asked("stop")

    def pause(self) -> bool:
        return self._asked("pause")


def _die_with_parent() -> None:
    """Ask Linux for SIGTERM when the parent (torchrun's agent) dies, so that no process outlives it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gacd_core.launch", description="One process of a gacd job.")
    p.add_argument("--spec", type=Path, required=True, help="the job's specification (JSON or YAML)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--checkpoint-dir", type=Path, help="where checkpoints go (default --out)")
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left there")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--events", type=Path, help="rank 0 appends progress events and the outcome here (JSON lines)")
    p.add_argument("--control", type=Path, help="a folder whose files stop and pause ask the job to stop or pause")
    return p


@contextlib.contextmanager
def _logging(main: bool, quiet: bool) -> Iterator[None]:
    level = logging.INFO if main and not quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    logging.getLogger("gacd.trainer").setLevel(logging.WARNING)  # the progress bar shows epochs
    yield


def _fan_out(*receivers: Callable[[ProgressEvent], None] | None) -> Callable[[ProgressEvent], None]:
    chosen = [r for r in receivers if r is not None]

    def progress(event: ProgressEvent) -> None:
        for receiver in chosen:
            receiver(event)

    return progress


def rank_main(argv: list[str] | None = None) -> int:
    """One process of a job (started by torchrun): the job of ``--spec``, as ``gacd train`` runs it.
    Rank 0 shows progress, writes the events and prints the summary. Returns the exit status of
    :data:`EXIT`."""
    from gacd_core.cli import _Display, _error, _summary
    from gacd_core.errors import GACDError, TrainingPaused, TrainingStopped
    from gacd_core.jobs import Callbacks, run_job
    from gacd_core.spec import load_spec_file, parse_spec

    args = _parser().parse_args(argv)
    main = int(os.environ.get("RANK", "0")) == 0
    _die_with_parent()
    requests = _Requests(args.control)
    events = _Events(args.events) if main and args.events else None
    display = _Display(args.quiet or not main)
    status: dict[str, Any] = {"status": "done"}
    with _logging(main, args.quiet):
        try:
            cb = Callbacks(
                progress=_fan_out(display.progress, events.progress if events else None),
                should_stop=requests.stop,
                should_pause=requests.pause,
            )
            report = run_job(
                parse_spec(load_spec_file(args.spec)),
                args.out,
                callbacks=cb,
                checkpoint_dir=args.checkpoint_dir,
                resume=not args.no_resume,
            )
        except TrainingStopped as exc:
            status = {"status": "paused" if isinstance(exc, TrainingPaused) else "stopped", "message": exc.message}
        except GACDError as exc:
            status = {"status": "error", "code": exc.code, "message": exc.message, "field": exc.field}
            if main:
                _error(exc)
        finally:
            display.close()
    if events is not None:
        events.write({"event": OUTCOME, **status})
    if main and status["status"] == "done":
        _summary(report, args.out)
    return EXIT[status["status"]]


if __name__ == "__main__":
    sys.exit(rank_main())
