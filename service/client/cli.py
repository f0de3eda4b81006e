"""The client commands of the ``gacd`` command line (registered through the ``gacd.commands`` entry
point, so that gacd_core never imports the service). They talk to the service over HTTP only:

    gacd submit job.yaml [--wait]       submit a job (the job specification, with teacher.id)
    gacd status [JOB]                   one job, or your recent jobs
    gacd wait JOB                       a progress bar until the job finishes
    gacd download JOB --out DIR         the job's outputs, SHA-256 checked
    gacd cancel JOB
    gacd teacher add FILE --arch A --dataset D [--normalization N] | gacd teacher from-job JOB

The client commands find the server in $GACD_URL / $GACD_API_KEY or in ``./var/serve.json``, which
``gacd serve`` (:mod:`service.launch.embedded`) writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gacd_core.artifacts import STATE_DICT_SUFFIXES
from gacd_core.normalization import PRESETS


def register(sub: Any) -> None:
    """Add the client commands to ``gacd``'s subcommands."""

    def client_parser(name: str, help: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help)
        q.add_argument("--url", help="API URL (default $GACD_URL or var/serve.json)")
        q.add_argument("--api-key", help="API key (default $GACD_API_KEY or var/serve.json)")
        q.add_argument("--var", type=Path, default=Path("var"), help=argparse.SUPPRESS)
        return q

    p = client_parser("submit", "submit a job to the service")
    p.add_argument("spec", type=Path, help="job specification (JSON or YAML), teacher named by teacher.id")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a field")
    p.add_argument("--idempotency-key")
    p.add_argument("--wait", action="store_true", help="wait for the job with a progress bar")
    p.set_defaults(run=_submit)
    p = client_parser("status", "show a job, or list your recent jobs")
    p.add_argument("job", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_status)
    p = client_parser("wait", "wait for a job, with a progress bar")
    p.add_argument("job")
    p.set_defaults(run=_wait)
    p = client_parser("download", "download a job's outputs")
    p.add_argument("job")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=_download)
    p = client_parser("cancel", "cancel a job")
    p.add_argument("job")
    p.set_defaults(run=_cancel)
    p = client_parser("teacher", "register a teacher: upload weights, or take a finished job's student")
    t = p.add_subparsers(dest="teacher_command", required=True)
    a = t.add_parser("add", help=f"upload .safetensors or {'/'.join(STATE_DICT_SUFFIXES)} (state_dict) weights")
    a.add_argument("file", type=Path)
    a.add_argument("--arch", required=True)
    a.add_argument("--num-classes", type=int, help="default: the classifier's output size in the file")
    a.add_argument("--dataset", required=True, help="the dataset it was trained for: its accuracy is checked there")
    a.add_argument(
        "--normalization",
        choices=list(PRESETS),
        help="the input normalisation it was trained with; default: the file's, else none (raw [0, 1] pixels)",
    )
    a.add_argument("--allow-weak", action="store_true", help="keep it even if its accuracy check finds it near chance")
    a.add_argument("--name")
    a.add_argument("--url", help=argparse.SUPPRESS)
    a.add_argument("--api-key", help=argparse.SUPPRESS)
    a.add_argument("--var", type=Path, default=Path("var"), help=argparse.SUPPRESS)
    f = t.add_parser("from-job", help="the student of a succeeded job of yours")
    f.add_argument("job")
    f.add_argument("--allow-weak", action="store_true", help="keep it even if its accuracy check finds it near chance")
    f.add_argument("--name")
    f.add_argument("--url", help=argparse.SUPPRESS)
    f.add_argument("--api-key", help=argparse.SUPPRESS)
    f.add_argument("--var", type=Path, default=Path("var"), help=argparse.SUPPRESS)
    p.set_defaults(run=_teacher)


# --- client commands -----------------------------------------------------------------------------
def _client(args: argparse.Namespace) -> Any:
    from service.client.http import Client, find_server

    found = find_server(args.var)
    url = args.url or (found[0] if found else None)
    key = args.api_key or (found[1] if found else None)
    if not url or not key:
        raise SystemExit("gacd: error: no server: start `gacd serve`, or set GACD_URL and GACD_API_KEY")
    return Client(url, key)


def _run_client(fn: Any, args: argparse.Namespace) -> int:
    from service.client.http import ClientError

    try:
        return int(fn(args) or 0)
    except ClientError as exc:
        where = f"{exc.field}: " if exc.field else ""
        print(f"gacd: error: {where}{exc.message} ({exc.code})", file=sys.stderr)
        return 2 if 400 <= exc.status < 500 else 1
    except OSError as exc:  # connection refused and the like
        print(f"gacd: error: {exc}", file=sys.stderr)
        return 1


def _submit(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        from gacd_core.spec import load_spec_file, set_path

        spec = load_spec_file(a.spec)
        for item in a.set:
            key, _, value = item.partition("=")
            import yaml

            set_path(spec, key.strip(), yaml.safe_load(value))
        with _client(a) as c:
            job = c.submit(spec, a.idempotency_key)
            print(job["id"])
            if a.wait:
                return follow(c, job["id"])
        return 0

    return _run_client(go, args)


def _line(job: dict[str, Any]) -> str:
    p = job["progress"]
    m = {k: v for k, v in (p.get("metrics") or {}).items() if k.endswith("_acc") and v is not None}
    acc = " ".join(f"{k.removesuffix('_acc')} {100 * v:.1f}%" for k, v in m.items())
    return (
        f"{job['id']}  {job['status']:<10} {job['spec']['method']:<7} {job['spec']['student']['arch']:<14} "
        f"epoch {p['epoch']}/{p['epochs']}  {acc}"
    ).rstrip()


def _status(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        with _client(a) as c:
            if a.job:
                job = c.job(a.job)
                print(json.dumps(job, indent=2) if a.json else _line(job))
                if job.get("error") and not a.json:
                    print(f"error: {job['error']['message']}")
            else:
                page = c.jobs(limit=20)
                if a.json:
                    print(json.dumps(page, indent=2))
                for job in [] if a.json else page["data"]:
                    print(_line(job))
        return 0

    return _run_client(go, args)


def follow(c: Any, job_id: str) -> int:
    """Show a job's progress (a bar on a terminal, its events elsewhere) until it ends; the exit status."""
    from tqdm import tqdm

    # A live bar on a terminal; elsewhere (logs, CI) only the event lines.
    bar = tqdm(
        total=1000,
        dynamic_ncols=True,
        file=sys.stderr,
        desc=job_id[:12],
        disable=not sys.stderr.isatty(),
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
    )

    def progress(job: dict[str, Any]) -> None:
        p = job["progress"]
        bar.update(int(1000 * (p.get("fraction") or 0)) - bar.n)
        eta = p.get("eta_seconds")
        stage = p.get("stage") or job["status"]
        bar.set_postfix_str(
            f"{job['status']}, {stage}, epoch {p['epoch']}/{p['epochs']}" + (f", ETA {eta:.0f} s" if eta else "")
        )

    def event(ev: dict[str, Any]) -> None:
        if ev["type"] in ("epoch", "started", "stage", "succeeded", "failed", "cancelled"):
            bar.write(f"  {ev['message']}", file=sys.stderr)

    try:
        job = c.wait(job_id, on_progress=progress, on_event=event)
    finally:
        bar.close()
    print(_line(job))
    if job["status"] == "failed":
        print(f"error: {job['error']['message']}", file=sys.stderr)
        return 1
    return 0 if job["status"] == "succeeded" else 1


def _wait(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        with _client(a) as c:
            return follow(c, a.job)

    return _run_client(go, args)


def _download(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        with _client(a) as c:
            for path in c.download(a.job, a.out):
                print(path)
        return 0

    return _run_client(go, args)


def _cancel(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        with _client(a) as c:
            print(_line(c.cancel(a.job)))
        return 0

    return _run_client(go, args)


def _teacher(args: argparse.Namespace) -> int:
    def go(a: argparse.Namespace) -> int:
        with _client(a) as c:
            if a.teacher_command == "add":
                t = c.upload_teacher(
                    a.file,
                    a.arch,
                    a.num_classes,
                    a.dataset,
                    a.name,
                    normalization=a.normalization,
                    allow_weak=a.allow_weak,
                )
            else:
                t = c.teacher_from_job(a.job, a.name, allow_weak=a.allow_weak)
            t = c.wait_ready("teacher", t["id"])
            for dataset, check in (t.get("checks") or {}).items():
                if check.get("clean_acc") is not None:
                    print(
                        f"{t['id']}: clean accuracy {100 * check['clean_acc']:.1f}% on {check['clean_subset']} "
                        f"{dataset} test images ({check['verdict']})",
                        file=sys.stderr,
                    )
            if t.get("warning"):
                print(f"warning: {t['warning']}", file=sys.stderr)
            print(t["id"])
        return 0

    return _run_client(go, args)
