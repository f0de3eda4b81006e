"""``GET /v1/models`` and ``GET /v1/models/{model}``: every architecture a job or a teacher upload
accepts, the same names as ``gacd list``, with what the RobustBench zoo table says of its entries
(normalisation, licence, input size, preprocessing, leaderboard), the entries not covered with their
reason, filters, and unknown names answered with the valid choices and the closest ones."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import quote

import pytest
from _workers import ServiceEnv
from fastapi.testclient import TestClient

from gacd_core.architectures import TIMM, TORCHVISION

pytestmark = [pytest.mark.api]

KEY = "models-key-" + "m" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
WANG = "robustbench:cifar10/Linf/Wang2023Better_WRN-28-10"
CHEN = "robustbench:cifar10/Linf/Chen2020Adversarial"  # an ensemble: not covered
MODEL_TABLES = (
    "models",
    "library models (your weights file; pretrained=False)",
    "robustbench entries (download the entry's weights file, name the entry)",
    "robustbench entries not covered",
)


@pytest.fixture(scope="module")
def api(start_service: Callable[..., ServiceEnv]) -> TestClient:
    env = start_service("models", api_keys=f"{KEY}=alice", queue="models-nobody-reads-this")
    return env.app()


def listed(api: TestClient, **params: str) -> dict[str, dict]:
    r = api.get("/v1/models", headers=AUTH, params=params)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["data"]}


def test_the_listing_holds_every_source_with_what_is_known(api: TestClient) -> None:
    models = listed(api)
    ours, timm, tv = models["resnet18"], models["timm:resnet18"], models["torchvision:resnet50"]
    assert (ours["source"], timm["source"], tv["source"]) == ("registry", "timm", "torchvision")
    for m in (ours, timm, tv):
        assert m["covered"] and m["usable_as"] == ["teacher", "student"] and m["normalization"] is None, m
    assert "CIFAR stem" in ours["description"] and tv["description"].startswith("torchvision ResNet-50")

    wang = models[WANG]
    assert (wang["source"], wang["dataset"], wang["threat"], wang["entry"]) == (
        "robustbench",
        "cifar10",
        "Linf",
        "Wang2023Better_WRN-28-10",
    )
    assert wang["covered"] and wang["usable_as"] == ["teacher", "student"]
    # its checkpoint carries no mean/std (non-persistent buffers): the table's numbers are the ones
    assert wang["normalization"]["mean"] == [0.4914, 0.4822, 0.4465]
    assert wang["normalization"]["std"] == [0.2471, 0.2435, 0.2616]
    assert wang["normalization"]["applied"] == "model"
    assert (wang["licence"], wang["num_classes"], wang["input_size"], wang["family"]) == (
        "MIT",
        10,
        [3, 32, 32],
        "dm_wide_resnet",
    )
    assert wang["leaderboard"]["link"] == "https://arxiv.org/abs/2302.04638"
    assert (wang["leaderboard"]["clean_acc"], wang["leaderboard"]["autoattack_acc"]) == (92.44, 67.31)
    assert wang["weights"]["host"] == "google_drive" and len(wang["source_commit"]) == 40

    imagenet = models["robustbench:imagenet/Linf/Wong2020Fast"]
    assert imagenet["preprocessing"]["preset"] == "Crop288" and imagenet["input_size"] == [3, 288, 288]
    assert imagenet["normalization"]["applied"] == "wrapper" and imagenet["normalization"]["std"][0] == 0.229
    assert models["robustbench:cifar10/Linf/Ding2020MMA"]["licence"] == "CC-BY-NC-SA-4.0"

    chen = models[CHEN]
    assert not chen["covered"] and chen["usable_as"] == []
    assert chen["not_covered_reason"].startswith("ensemble: averages the softmax outputs of 3 networks")


def test_the_names_are_those_of_gacd_list(api: TestClient) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gacd_core.cli", "list", "--json"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    tables = json.loads(out.stdout)
    models = listed(api)
    assert list(models) == [name for t in MODEL_TABLES for name in tables[t]]  # the same names, in its order
    refused = tables["robustbench entries not covered"]
    assert {n for n, m in models.items() if not m["covered"]} == set(refused)
    for name, m in models.items():
        # gacd list's line is the description, or for an entry not covered the reason
        assert (m["description"] if m["covered"] else m["not_covered_reason"]) == next(
            t[name] for t in map(tables.get, MODEL_TABLES) if name in t
        ), name


def test_filters(api: TestClient) -> None:
    everything = listed(api)
    assert list(listed(api, source="timm")) == [f"timm:{n}" for n in TIMM]
    assert list(listed(api, source="torchvision")) == [f"torchvision:{n}" for n in TORCHVISION]
    imagenet = listed(api, dataset="imagenet")
    assert imagenet and all(m["source"] == "robustbench" and m["dataset"] == "imagenet" for m in imagenet.values())
    refused = listed(api, covered="false")
    assert CHEN in refused and all(not m["covered"] for m in refused.values())
    assert len(refused) + len(listed(api, covered="true")) == len(everything)
    assert listed(api, source="registry", covered="false") == {}
    both = listed(api, dataset="imagenet", covered="false")
    assert both and set(both) == set(imagenet) & set(refused)
    # q: a part of the name or of the description, in any case
    wang = {f"robustbench:{d}/Linf/Wang2023Better_WRN-{w}" for d in ("cifar10", "cifar100") for w in ("28-10", "70-16")}
    assert set(listed(api, q="wang2023better")) == wang
    assert set(listed(api, q="wang2023better", dataset="cifar10")) == {n for n in wang if "cifar10/" in n}
    assert "wrn_28_10" in listed(api, q="WIDERESNET-28-10") and WANG in listed(api, q="WIDERESNET-28-10")
    assert listed(api, q="no such model anywhere") == {}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "keras"}, "source"),
        ({"dataset": "mnist"}, "dataset"),
        ({"covered": "maybe"}, "covered"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(api: TestClient, params: dict[str, str], field: str) -> None:
    r = api.get("/v1/models", headers=AUTH, params=params)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_request", field)


@pytest.mark.parametrize("name", ["resnet18", "timm:resnet18", "torchvision:resnet50", WANG, CHEN])
def test_one_model_by_its_name_as_written_or_percent_encoded(api: TestClient, name: str) -> None:
    listed_one = listed(api)[name]
    for path in (name, quote(name, safe="")):
        r = api.get(f"/v1/models/{path}", headers=AUTH)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == listed_one


@pytest.mark.parametrize(
    ("name", "says", "suggested"),
    [
        ("resnt18", "valid: resnet18, preact_resnet18", "resnet18"),
        ("timm:resnet19", "timm models allowed here are resnet18, resnet34", "timm:resnet18"),
        ("torchvision:resnet51", "torchvision models allowed here are", "torchvision:resnet50"),
        ("robustbench:cifar10/Linf/Wang2023Better", "unknown RobustBench entry 'Wang2023Better'", WANG),
        ("robustbench:cifar10/Linf/wang2023better_wrn-28-10", "did you mean", WANG),
    ],
)
def test_an_unknown_name_is_a_404_naming_the_closest(api: TestClient, name: str, says: str, suggested: str) -> None:
    r = api.get(f"/v1/models/{name}", headers=AUTH)
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("not_found", "model")
    assert says in error["message"] and suggested in error["message"], error["message"]
    assert suggested in [d["suggestion"] for d in error["details"]]


def test_a_malformed_robustbench_name_says_how_one_is_written(api: TestClient) -> None:
    r = api.get("/v1/models/robustbench:cifar10/Wang2023Better_WRN-28-10", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert "expected robustbench:<dataset>/<threat>/<entry>" in r.json()["error"]["message"]


def test_the_listing_needs_a_key_and_is_documented(api: TestClient) -> None:
    for path in ("/v1/models", f"/v1/models/{WANG}"):
        r = api.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
    doc = api.get("/openapi.json").json()
    listing, one = doc["paths"]["/v1/models"]["get"], doc["paths"]["/v1/models/{model}"]["get"]
    assert (listing["operationId"], one["operationId"]) == ("listModels", "getModel")
    assert {"401", "422", "503"} <= set(listing["responses"]) and {"401", "404", "503"} <= set(one["responses"])
    source = next(p for p in listing["parameters"] if p["name"] == "source")
    assert source["schema"]["anyOf"][0]["enum"] == ["registry", "timm", "torchvision", "robustbench"]
    # no OpenAPI link from the listing to one model: with it, the fuzzer's stateful phase stopped reaching the jobs
    assert "links" not in listing["responses"]["200"]
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ModelList")
    assert one["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Model")
    assert doc["components"]["schemas"]["Model"]["example"]["name"] == WANG
