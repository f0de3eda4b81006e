"""One resolver for a weights file's input normalisation, one list of weights suffixes, on every path.

1. :func:`gacd_core.normalization.resolve_input` with each source alone (our metadata, ``mu``/``sigma``
   buffers, a preset, values, the architecture's default) and with them together: what a file states
   wins, a request must agree with it, and the request's rules (mean and std together; a preset or
   values, not both unless equal) name the field to fix.
2. The same request, refused the same way (the same field) by the job specification (the CLI's and
   the worker's path) and by the upload route.
3. :data:`gacd_core.artifacts.WEIGHTS_SUFFIXES` (``.bin`` included, as in ``pytorch_model.bin``) read by
   :func:`gacd_core.models.load_model_file` and taken by ``POST /v1/teachers``; anything else refused
   on both, with the same list in the message and in the API's documents.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gacd_core.artifacts import (
    JOB_OUTPUTS,
    STATE_DICT_SUFFIXES,
    TEACHER_FILES,
    WEIGHTS_SUFFIXES,
    media_type,
    weights_format,
)
from gacd_core.errors import SpecError, WeightsError
from gacd_core.models import create_model, load_model_file, save_weights
from gacd_core.normalization import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IDENTITY,
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputNorm,
    NormalizationError,
    parse_rgb,
    resolve_input,
)
from gacd_core.spec import parse_spec

CIFAR10 = (CIFAR10_MEAN, CIFAR10_STD)
IMAGENET = (IMAGENET_MEAN, IMAGENET_STD)
RB = ((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))  # a RobustBench-style mu/sigma that no preset has


def _pair(norm: InputNorm) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return norm.mean, norm.std


# --------------------------------------------------------------------------------------------------
# 1. The resolver: each source, and their precedence
# --------------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_nothing_said_is_the_architectures_default() -> None:
    norm = resolve_input()
    assert _pair(norm) == IDENTITY and norm.source == "default" and norm.origin is None
    assert norm.describe() == {"name": "none", "mean": [0.0] * 3, "std": [1.0] * 3, "source": "default"}
    own = resolve_input(default=IMAGENET)  # an architecture whose own default is not identity
    assert _pair(own) == IMAGENET and own.source == "default"


@pytest.mark.unit
def test_a_preset_or_values_from_the_user() -> None:
    assert _pair(resolve_input("cifar10")) == CIFAR10 and resolve_input("cifar10").source == "user"
    values = resolve_input(None, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert _pair(values) == ((0.5,) * 3, (0.25,) * 3) and values.source == "user"
    assert values.describe()["name"] == "custom"
    same = resolve_input("cifar10", list(CIFAR10_MEAN), list(CIFAR10_STD))  # both, equal: allowed
    assert _pair(same) == CIFAR10 and same.source == "user"
    assert resolve_input("none", default=IMAGENET).source == "user"  # a request beats the default


@pytest.mark.unit
def test_the_files_metadata_wins_and_a_request_must_agree() -> None:
    norm = resolve_input(metadata=CIFAR10, origin="dataset")
    assert _pair(norm) == CIFAR10 and norm.source == "file" and norm.describe()["origin"] == "dataset"
    agreeing = resolve_input("cifar10", metadata=CIFAR10, origin="dataset")
    assert agreeing.source == "file" and agreeing.origin == "dataset"
    with pytest.raises(NormalizationError, match="the file's model normalises with mean") as info:
        resolve_input("none", metadata=CIFAR10)
    assert info.value.field is None  # the fix is to leave the request out, not to change a field
    with pytest.raises(NormalizationError, match="normalises with std"):
        resolve_input(None, None, [0.2, 0.2, 0.2], metadata=CIFAR10)  # compared before the pair rule
    with pytest.raises(NormalizationError, match="mean needs 3 values"):
        resolve_input(None, [0.5] * 4, [0.2] * 4, metadata=CIFAR10)


@pytest.mark.unit
def test_mu_sigma_buffers_win_and_a_request_must_agree() -> None:
    norm = resolve_input(buffers=RB, file="rb.pt")
    assert _pair(norm) == RB and norm.source == "file" and norm.origin is None
    assert resolve_input(None, RB[0], RB[1], buffers=RB).source == "file"
    with pytest.raises(NormalizationError, match=r"rb\.pt normalises with its own mu") as info:
        resolve_input("none", buffers=RB, file="rb.pt")
    assert info.value.field is None and "leave the normalisation out" in info.value.message
    with pytest.raises(NormalizationError, match="normalises with its own mu"):
        resolve_input(metadata=CIFAR10, buffers=RB)  # a file contradicting itself
    both = resolve_input(metadata=RB, origin="user", buffers=RB)
    assert _pair(both) == RB and both.source == "file" and both.origin == "user"


@pytest.mark.unit
def test_float32_values_agree_with_what_was_typed() -> None:
    stored = tuple(float(torch.tensor(v, dtype=torch.float32)) for v in CIFAR10_MEAN)
    norm = resolve_input("cifar10", metadata=(stored, CIFAR10_STD))
    assert norm.describe()["mean"] == list(CIFAR10_MEAN)  # rounded for records and reports


BAD_REQUESTS = [
    pytest.param({"mean": [0.5, 0.5, 0.5]}, "std", "give both mean and std, or neither", id="mean-alone"),
    pytest.param({"std": [0.5, 0.5, 0.5]}, "mean", "give both mean and std, or neither", id="std-alone"),
    pytest.param(
        {"normalization": "none", "mean": [0.5] * 3, "std": [0.2] * 3}, "normalization", "contradict", id="preset-vs"
    ),
    pytest.param({"normalization": "cifar10", "mean": [0.5] * 3}, "std", "give both", id="preset-and-half"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("request_", "field", "text"), BAD_REQUESTS)
def test_the_rules_of_a_request_name_the_field(request_: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(NormalizationError) as info:
        resolve_input(request_.get("normalization"), request_.get("mean"), request_.get("std"))
    assert info.value.field == field and text in info.value.message
    assert info.value.located() == f"{field}: {info.value.message}"


@pytest.mark.unit
def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(NormalizationError, match="unknown normalisation 'zca'; valid: none, cifar10") as info:
        resolve_input("zca", metadata=CIFAR10)
    assert info.value.field == "normalization"


@pytest.mark.unit
@pytest.mark.parametrize(("request_", "field", "text"), BAD_REQUESTS)
def test_the_job_specification_refuses_the_same_way(request_: dict[str, Any], field: str, text: str) -> None:
    """The path of the CLI's flags and of the worker's jobs: the specification calls the same rule."""
    with pytest.raises(SpecError) as info:
        parse_spec({"method": "kd", "teacher": {"weights": "t.pt", "arch": "resnet18", **request_}})
    assert info.value.field == f"teacher.{field}" and text in info.value.message, info.value.errors


@pytest.mark.unit
def test_three_numbers_as_a_list_or_with_commas() -> None:
    assert parse_rgb("[0.5, 0.25, 1]") == (0.5, 0.25, 1.0)
    assert parse_rgb(" 0.5,0.25 ,1e-1 ") == (0.5, 0.25, 0.1)
    for bad in ("0.5,0.5", "[0.5, 0.5]", '["a", 1, 2]', "x,y,z", "[1, 2, 3", "{}"):
        with pytest.raises(ValueError, match="three numbers"):
            parse_rgb(bad)


# --------------------------------------------------------------------------------------------------
# 2. Through load_model_file (the CLI's and the worker's loads)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> Any:
    torch.manual_seed(0)
    return create_model("tiny_resnet", 7).eval()


@pytest.mark.unit
def test_load_model_file_takes_a_preset_and_says_where_it_came_from(tiny: Any, tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(tiny.state_dict(), path)
    assert load_model_file(path, arch="tiny_resnet").normalization()["source"] == "default"
    asked = load_model_file(path, arch="tiny_resnet", normalization="cifar10").normalization()
    assert asked["name"] == "cifar10" and asked["source"] == "user"
    with pytest.raises(WeightsError, match="give both mean and std") as info:
        load_model_file(path, arch="tiny_resnet", mean=(0.5, 0.5, 0.5))
    assert info.value.field == "std"
    ours = save_weights(load_model_file(path, arch="tiny_resnet", normalization="cifar10"), tmp_path / "m.safetensors")
    again = load_model_file(ours, normalization="cifar10").normalization()
    assert again["source"] == "file" and again["origin"] == "user"
    with pytest.raises(WeightsError, match="normalises with mean") as info:
        load_model_file(ours, normalization="none")
    assert info.value.field is None


# --------------------------------------------------------------------------------------------------
# 3. One list of weights suffixes, on the io path and the upload path
# --------------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_the_suffix_list_names_the_formats() -> None:
    assert ".bin" in STATE_DICT_SUFFIXES and set(WEIGHTS_SUFFIXES) == {".safetensors", ".pt", ".pth", ".bin", ".t7"}
    assert weights_format("teacher.safetensors") == "safetensors"
    assert weights_format("pytorch_model.BIN") == weights_format("ckpt.t7") == "state_dict"
    assert weights_format("w.onnx") is None and weights_format("noext") is None
    assert JOB_OUTPUTS[0] == "student.safetensors" and media_type("report.json") == "application/json"
    assert media_type("student.safetensors") == "application/octet-stream"


@pytest.mark.unit
@pytest.mark.parametrize("suffix", STATE_DICT_SUFFIXES)
def test_every_state_dict_suffix_loads(tiny: Any, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"pytorch_model{suffix}"
    torch.save({"state_dict": tiny.state_dict()}, path)
    loaded = load_model_file(path, arch="tiny_resnet")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), tiny(x), rtol=0, atol=0)


@pytest.mark.unit
def test_another_suffix_is_refused_with_the_list(tmp_path: Path) -> None:
    (tmp_path / "w.onnx").write_bytes(b"\0" * 16)
    with pytest.raises(WeightsError) as info:
        load_model_file(tmp_path / "w.onnx", arch="tiny_resnet")
    assert all(suffix in info.value.message for suffix in WEIGHTS_SUFFIXES), info.value.message


KEY = "norm-tests-key-" + "n" * 20
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def api(start_service: Callable[..., Any]) -> Any:
    """The API on Redis, with no worker: uploads are stored and queued, never validated here."""
    env = start_service("normalization", api_keys=f"{KEY}=nora", queue="nobody-validates")
    return env.app(), Path(env.settings["artifact_root"])


def _upload(client: Any, name: str, content: bytes = b"weights", **fields: str) -> Any:
    form = {"arch": "tiny_resnet", "dataset": "cifar10", **fields}
    return client.post("/v1/teachers", headers=AUTH, data=form, files={"file": (name, content)})


@pytest.mark.api
@pytest.mark.parametrize("suffix", [*WEIGHTS_SUFFIXES, ".BIN"])
def test_the_upload_route_takes_every_suffix(api: Any, suffix: str) -> None:
    client, root = api
    r = _upload(client, f"pytorch_model{suffix}")
    assert r.status_code == 201, r.text
    kind = weights_format(f"pytorch_model{suffix}")
    assert kind is not None
    stored = root / "nora" / "teachers" / r.json()["id"] / TEACHER_FILES[kind]
    assert stored.read_bytes() == b"weights"


@pytest.mark.api
def test_the_upload_route_refuses_another_suffix_with_the_list(api: Any) -> None:
    client, _ = api
    r = _upload(client, "w.onnx")
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "unsupported_file" and err["field"] == "file", err
    assert all(suffix in err["message"] for suffix in WEIGHTS_SUFFIXES), err
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/teachers"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = doc["components"]["schemas"]["TeacherUpload"]
    disposition = body["encoding"]["file"]["headers"]["Content-Disposition"]["description"]
    described = schema["properties"]["file"]["description"] + disposition
    assert all(f"*{suffix}" in described for suffix in WEIGHTS_SUFFIXES), described


@pytest.mark.api
@pytest.mark.parametrize(("request_", "field", "text"), BAD_REQUESTS)
def test_the_upload_route_refuses_the_same_way(api: Any, request_: dict[str, Any], field: str, text: str) -> None:
    client, _ = api
    form = {k: v if isinstance(v, str) else ",".join(str(x) for x in v) for k, v in request_.items()}
    r = _upload(client, "w.pt", **form)
    err = r.json()["error"]
    assert r.status_code == 422 and err["code"] == "invalid_request", err
    assert err["field"] == field and text in err["message"], err
