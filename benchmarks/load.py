"""Load test of the HTTP API: many clients polling job status and listing jobs.

What it measures: requests per second, latency (p50, p95, p99, max) and errors of the two read routes
that clients poll, ``GET /v1/jobs/{id}`` (a ``gacd wait`` poller) and ``GET /v1/jobs?limit=20`` (a
dashboard), with ``--clients`` concurrent clients for ``--seconds``. Errors are counted in two kinds:
answers that are not 2xx (by status code) and exceptions (connection errors, timeouts; by type).

How: one asyncio process. Each client owns one keep-alive HTTP/1.1 connection (a small client on
asyncio streams by default, so that the load generator spends little of the CPU it shares with the
server; ``--client httpx`` uses ``httpx.AsyncClient`` instead). Before the timed phase it creates a
few jobs (``--jobs``, 5), cancels them and waits for the queue to empty, so that the job worker is
idle while the API is measured; if the tenant may not create jobs (429), it polls the jobs it already
has. Each request picks a route by the weights of ``--mix`` and, for status, one of the jobs at
random. Two ways to send:

- closed loop (``--interval 0``): each client sends its next request as soon as the last one is
  answered. This finds the most the server can do; latency is then mostly queueing, and by Little's
  law its mean is about clients / throughput.
- paced polling (``--interval S``): each client sends one request every S seconds, the clients' start
  times spread uniformly at random over the first interval, like ``gacd wait`` pollers. Latency is
  counted from the time the request was due, so a server (or load generator) that falls behind is not
  flattered (no coordinated omission).

Requests due in the first ``--warmup`` seconds are sent but not counted. With no ``--url`` it starts
its own ``gacd serve`` (Redis, workers, API) in a temporary directory, with an unreadable data root, on the
CPU, and stops it at the end; it then also reports the CPU used by the API process (and its CPU time
per request), Redis and the workers. Machine CPU (all cores, from /proc/stat) is reported too, since
the load generator, the server and anything else running share it.

    python benchmarks/load.py                          # own gacd serve; closed loop, then 1 s polling
    python benchmarks/load.py --interval 1 --seconds 60
    python benchmarks/load.py --url http://127.0.0.1:8000 --key gacd_...   # a service already running
    make bench

It prints one markdown table (a row per mode and route); ``--json FILE`` also writes the numbers.
Results on this project's development machine: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gacd_core import catalog

# A job that is valid and cheap: a tiny model for two epochs on 64 images. It is cancelled at once.
JOB_SPEC: dict[str, Any] = {
    "method": "natural",
    "student": {"arch": "tiny_wrn"},
    "dataset": {"name": "cifar10", "train_subset": 64, "test_subset": 16},
    "hyperparameters": {"epochs": 2, "batch_size": 32},
    "evaluation": {"eps_sweep": [0], "throughput": False},
    "seed": 0,
    "metadata": {"created_by": "benchmarks/load.py"},
}
TERMINAL = ("succeeded", "failed", "cancelled")


# --- clients --------------------------------------------------------------------------------------
class RawConnection:
    """One keep-alive HTTP/1.1 connection for GET requests, on asyncio streams.

    It understands what the API sends (Content-Length or chunked bodies, ``Connection: close``) and
    reconnects after an error or a close. It costs a few tens of microseconds of CPU per request, far
    less than a general-purpose client, so the numbers are the server's.
    """

    def __init__(self, host: str, port: int, key: str, prefix: str = "") -> None:
        self.host, self.port, self.prefix = host, port, prefix.encode()
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\nAccept: application/json\r\n\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(b"GET " + self.prefix + path.encode() + b" HTTP/1.1\r\n" + self.head)
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length: int | None = None
            chunked = close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
            elif length is not None:
                await self.reader.readexactly(length)
            else:
                await self.reader.read()
                close = True
        except BaseException:
            await self.close()
            raise
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def make_getters(
    kind: str, url: str, key: str, clients: int
) -> tuple[list[Callable[[str], Awaitable[int]]], Callable[[], Awaitable[None]]]:
    """One ``get(path) -> status`` per client, and a coroutine function that closes them all."""
    if kind == "raw":
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise SystemExit("--client raw speaks plain http only; use --client httpx for https")
        prefix = parts.path.rstrip("/")  # a service behind a proxy under a path
        conns = [RawConnection(parts.hostname, parts.port or 80, key, prefix) for _ in range(clients)]

        async def close_raw() -> None:
            for c in conns:
                await c.close()

        return [c.get for c in conns], close_raw

    client = httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=clients, max_keepalive_connections=clients),
        timeout=None,  # the caller's timeout applies
    )

    async def get(path: str) -> int:
        return (await client.get(path)).status_code

    return [get] * clients, client.aclose


# --- CPU accounting (Linux /proc; empty elsewhere) ----------------------------------------------------
def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs since boot."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _processes() -> dict[int, tuple[int, str, int]]:
    """pid -> (parent pid, command line, user + system clock ticks) of every process we can read."""
    out: dict[int, tuple[int, str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (int(rest[1]), cmd, int(rest[11]) + int(rest[12]))
    return out


def service_ticks(root: int | None) -> dict[str, int]:
    """CPU clock ticks used so far by the parts of a ``gacd serve`` process tree: the API (uvicorn
    and any children), Redis and the two Celery workers."""
    if root is None or not Path("/proc").is_dir():
        return {}
    procs = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def subtree(pid: int) -> Iterator[int]:
        yield pid
        for c in children.get(pid, []):
            yield from subtree(c)

    out: Counter[str] = Counter()
    for child in children.get(root, []):
        cmd = procs[child][1]
        part = "api" if "uvicorn" in cmd else "redis" if "redis-server" in cmd else "workers"
        out[part] += sum(procs[p][2] for p in subtree(child))
    return dict(out)


@dataclass
class CpuMeter:
    """CPU used between :meth:`start` and :meth:`stop`, in percent of one core (machine: of all)."""

    server_pid: int | None
    t0: float = 0.0
    proc0: float = 0.0
    machine0: tuple[int, int] | None = None
    server0: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        self.t0, self.proc0 = time.perf_counter(), time.process_time()
        self.machine0, self.server0 = _machine_ticks(), service_ticks(self.server_pid)

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        out = {"load_generator": 100 * (time.process_time() - self.proc0) / wall}
        machine1 = _machine_ticks()
        if self.machine0 and machine1 and machine1[1] > self.machine0[1]:
            out["machine_busy"] = 100 * (machine1[0] - self.machine0[0]) / (machine1[1] - self.machine0[1])
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        for part, ticks in service_ticks(self.server_pid).items():
            out[part] = 100 * (ticks - self.server0.get(part, 0)) / hz / wall
        return out


# --- one timed phase -------------------------------------------------------------------------------
@dataclass
class RouteStats:
    latencies: list[float] = field(default_factory=list)
    non_2xx: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)

    def merge(self, other: RouteStats) -> None:
        self.latencies += other.latencies
        self.non_2xx.update(other.non_2xx)
        self.exceptions.update(other.exceptions)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def summarize(stats: RouteStats, seconds: float) -> dict[str, Any]:
    lat = sorted(stats.latencies)
    ms = {f"p{q}_ms": 1000 * percentile(lat, q) for q in (50, 95, 99)}
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        **ms,
        "max_ms": 1000 * (lat[-1] if lat else 0.0),
        "non_2xx": sum(stats.non_2xx.values()),
        "non_2xx_by_status": {str(k): v for k, v in sorted(stats.non_2xx.items())},
        "exceptions": sum(stats.exceptions.values()),
        "exceptions_by_type": dict(stats.exceptions),
    }


def parse_mix(text: str) -> list[tuple[str, float]]:
    """``status=4,list=1`` -> [("status", 0.8), ("list", 0.2)]."""
    weights: list[tuple[str, float]] = []
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in ("status", "list"):
            raise argparse.ArgumentTypeError(f"--mix: routes are 'status' and 'list', not {name!r}")
        try:
            w = float(value) if value else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"--mix: {value!r} is not a number") from None
        if w < 0:
            raise argparse.ArgumentTypeError("--mix: weights must not be negative")
        weights.append((name, w))
    total = sum(w for _, w in weights)
    if total <= 0:
        raise argparse.ArgumentTypeError("--mix: give at least one positive weight")
    return [(n, w / total) for n, w in weights if w > 0]


async def run_phase(
    getters: list[Callable[[str], Awaitable[int]]],
    job_ids: list[str],
    mix: list[tuple[str, float]],
    interval: float,
    seconds: float,
    warmup: float,
    timeout: float,
    list_limit: int,
    seed: int,
    meter: CpuMeter,
) -> tuple[dict[str, RouteStats], dict[str, float]]:
    """Run the clients for ``warmup + seconds``; statistics of the requests due after the warm-up."""
    names = [n for n, _ in mix]
    cum: list[float] = []
    acc = 0.0
    for _, w in mix:
        acc += w
        cum.append(acc)
    list_path = f"/v1/jobs?limit={list_limit}"
    status_paths = [f"/v1/jobs/{j}" for j in job_ids]
    stats = {n: RouteStats() for n in names}
    clock = time.perf_counter
    t_start = clock()
    t_measure, t_end = t_start + warmup, t_start + warmup + seconds

    async def client(i: int, get: Callable[[str], Awaitable[int]]) -> None:
        rng = random.Random(seed * 1_000_003 + i)
        due = t_start + (rng.random() * interval if interval > 0 else 0.0)
        while True:
            now = clock()
            if interval > 0:
                if due > now:
                    await asyncio.sleep(due - now)
            else:
                due = now
            if due >= t_end:
                return
            x = rng.random()
            name = next((n for n, c in zip(names, cum, strict=True) if x < c), names[-1])
            path = rng.choice(status_paths) if name == "status" else list_path
            code = 0
            error = None
            try:
                async with asyncio.timeout(timeout):
                    code = await get(path)
            except Exception as exc:
                error = type(exc).__name__
            done = clock()
            if due >= t_measure:
                s = stats[name]
                if error is not None:
                    s.exceptions[error] += 1
                else:
                    s.latencies.append(done - due)
                    if not 200 <= code < 300:
                        s.non_2xx[code] += 1
            if interval > 0:
                due += interval

    tasks = [asyncio.create_task(client(i, g)) for i, g in enumerate(getters)]
    await asyncio.sleep(max(0.0, t_measure - clock()))
    meter.start()
    await asyncio.sleep(max(0.0, t_end - clock()))
    cpu = meter.stop()
    await asyncio.gather(*tasks)
    return stats, cpu


# --- set-up: the jobs to poll ------------------------------------------------------------------------
async def prepare_jobs(url: str, key: str, n: int, cancel: bool) -> list[str]:
    """Create ``n`` small jobs (fewer if the tenant's limits say 429), cancel them and wait until they
    have all finished; without any, the ids of the tenant's existing jobs."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        (await c.get("/healthz")).raise_for_status()
        made: list[str] = []
        for i in range(n):
            r = await c.post("/v1/jobs", json={**JOB_SPEC, "seed": i})
            if r.status_code == 429:
                why = r.json()["error"]["message"]
                print(f"job creation refused (429: {why}); polling what there is", file=sys.stderr)
                break
            if r.status_code != 202:
                raise SystemExit(f"POST /v1/jobs answered {r.status_code}: {r.text}")
            made.append(r.json()["id"])
        if cancel:
            for jid in made:
                r = await c.post(f"/v1/jobs/{jid}/cancel")
                if r.status_code not in (200, 409):  # 409: it had already finished (failed)
                    raise SystemExit(f"POST /v1/jobs/{jid}/cancel answered {r.status_code}: {r.text}")
            deadline = time.monotonic() + 120
            pending = set(made)
            while pending and time.monotonic() < deadline:
                for jid in list(pending):
                    if (await c.get(f"/v1/jobs/{jid}")).json()["status"] in TERMINAL:
                        pending.discard(jid)
                if pending:
                    await asyncio.sleep(0.5)
            if pending:
                print(f"warning: {len(pending)} jobs are still unfinished; the worker may be busy", file=sys.stderr)
            await _queue_drained(c, deadline)
        if made:
            return made
        page = (await c.get("/v1/jobs", params={"limit": 20})).json()
        ids = [j["id"] for j in page["data"]]
        if not ids:
            raise SystemExit("the tenant has no jobs to poll and may not create any")
        return ids


async def _queue_drained(c: httpx.AsyncClient, deadline: float) -> None:
    """Wait until the job queue is empty (``gacd_queue_depth`` of ``/metrics``), so that the worker has
    taken the cancelled jobs' messages and dropped them, then a little longer for it to go idle."""
    while time.monotonic() < deadline:
        r = await c.get("/metrics")
        depth = next((ln.split()[-1] for ln in r.text.splitlines() if ln.startswith("gacd_queue_depth ")), "0")
        if r.status_code != 200 or float(depth) == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)


# --- an own gacd serve -----------------------------------------------------------------------------------
@contextlib.contextmanager
def own_service(keep: bool) -> Iterator[tuple[str, str, int]]:
    """Start ``gacd serve`` in a temporary directory; yields (url, api key, pid) and stops it after."""
    gacd = Path(sys.executable).parent / "gacd"
    exe = str(gacd) if gacd.exists() else shutil.which("gacd")
    if exe is None:
        raise SystemExit("no gacd command: install the project (make venv) or pass --url and --key")
    tmp = Path(tempfile.mkdtemp(prefix="gacd-load-"))
    # CIFAR-10's files, empty: there for the API (which refuses a job on a dataset the data root lacks),
    # unreadable for a worker, so that a job that starts anyway fails at once
    cifar10 = catalog.DATASETS["cifar10"]
    (tmp / "data" / cifar10.folder).mkdir(parents=True)
    for name in cifar10.files:
        (tmp / "data" / cifar10.folder / name).touch()
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115 (closed below)
    argv = [exe, "serve", "--var", str(tmp / "var"), "--port", "0", "--data-root", str(tmp / "data")]
    argv += ["--device", "cpu"]
    # its own session: a Ctrl-C here reaches only this process, which then stops gacd serve once
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        serve_file = tmp / "var" / "serve.json"
        deadline = time.monotonic() + 180
        info: dict[str, Any] | None = None
        while info is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gacd serve did not start; see {tmp / 'serve.log'}")
            time.sleep(0.2)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):  # absent, or being written
                info = json.loads(serve_file.read_text())
        print(f"started gacd serve at {info['url']} (state in {tmp})", file=sys.stderr)
        yield info["url"], info["api_key"], proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        if keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --- report -------------------------------------------------------------------------------------------
def mode_name(interval: float) -> str:
    return "closed loop" if interval == 0 else f"polling every {interval:g} s"


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| mode | route | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | non-2xx | exceptions | CPU % |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for res in results:
        for route, s in res["routes"].items():
            cpu = ""
            if route == "all":
                c = res["cpu"]
                parts = [f"load gen {c['load_generator']:.0f}"]
                parts += [f"{k} {c[k]:.0f}" for k in ("api", "redis", "workers") if k in c]
                if "api" in c and s["rps"] > 0:
                    parts[1] += f" ({10 * c['api'] / s['rps']:.2f} ms/req)"
                if "machine_busy" in c:
                    n = os.cpu_count() or 1
                    parts.append(f"machine {c['machine_busy'] * n:.0f} of {100 * n}")
                cpu = ", ".join(parts)
            rows.append(
                f"| {res['mode'] if route == 'all' else ''} | {route} | {s['requests']} | {s['rps']:.0f} "
                f"| {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} "
                f"| {s['non_2xx']} | {s['exceptions']} | {cpu} |"
            )
    return head + "\n".join(rows)


async def bench(args: argparse.Namespace, url: str, key: str, server_pid: int | None) -> list[dict[str, Any]]:
    job_ids = await prepare_jobs(url, key, args.jobs, not args.no_cancel)
    print(f"polling {len(job_ids)} jobs with {args.clients} clients ({args.client} client)", file=sys.stderr)
    results = []
    for k, interval in enumerate(args.interval):
        getters, close = make_getters(args.client, url, key, args.clients)
        try:
            stats, cpu = await run_phase(
                getters,
                job_ids,
                args.mix,
                interval,
                args.seconds,
                args.warmup,
                args.timeout,
                args.list_limit,
                args.seed + k,
                CpuMeter(server_pid),
            )
        finally:
            await close()
        total = RouteStats()
        for s in stats.values():
            total.merge(s)
        routes = {"all": summarize(total, args.seconds)}
        if len(stats) > 1:
            routes.update({n: summarize(s, args.seconds) for n, s in stats.items()})
        res = {"mode": mode_name(interval), "interval": interval, "routes": routes, "cpu": cpu}
        results.append(res)
        a = routes["all"]
        print(
            f"{res['mode']}: {a['rps']:.0f} req/s, p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms, "
            f"non-2xx {a['non_2xx']} {a['non_2xx_by_status'] or ''}".rstrip()
            + f", exceptions {a['exceptions']} {a['exceptions_by_type'] or ''}".rstrip(),
            file=sys.stderr,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--url", help="a running service (default: start an own gacd serve)")
    p.add_argument("--key", help="its API key (default $GACD_API_KEY)")
    p.add_argument("--clients", type=int, default=100, help="concurrent clients (default 100)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds per mode (default 30)")
    p.add_argument(
        "--interval",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        help="seconds between one client's requests; 0 = closed loop; several values run one after another "
        "(default: 0 1)",
    )
    p.add_argument("--mix", type=parse_mix, default="status=4,list=1", help="route weights (default status=4,list=1)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds sent before counting (default 3)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as failed")
    p.add_argument("--jobs", type=int, default=5, help="jobs to create and poll (default 5)")
    p.add_argument("--no-cancel", action="store_true", help="leave the created jobs to run")
    p.add_argument("--list-limit", type=int, default=20, help="limit of the listing requests (default 20)")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw", help="HTTP client (default raw)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--keep", action="store_true", help="keep the own service's temporary directory")
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or any(i < 0 for i in args.interval):
        p.error("--clients and --seconds must be positive, --interval not negative")

    started = datetime.now(UTC).isoformat(timespec="seconds")
    if args.url:
        key = args.key or os.environ.get("GACD_API_KEY")
        if not key:
            p.error("--url needs --key (or $GACD_API_KEY)")
        results = asyncio.run(bench(args, args.url.rstrip("/"), key, None))
        target = args.url
    else:
        with own_service(args.keep) as (url, key, pid):
            results = asyncio.run(bench(args, url, key, pid))
        target = "own gacd serve"
    mix = ", ".join(f"{n} {w:.0%}" for n, w in args.mix)
    print(
        f"\n{args.clients} clients, {args.seconds:g} s per mode after {args.warmup:g} s warm-up, mix {mix}, "
        f"{args.client} client, against {target}; CPU in % of one core\n"
    )
    print(table(results))
    if args.json:
        doc = {"started": started, "target": target, "args": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({**doc, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
