"""``/v1/models``: every architecture a job's student or teacher, or a teacher upload, may name as
``arch``, with what is known about it; the same names as ``gacd list`` (issue 25).

Four sources: this project's registry (:data:`gacd_core.catalog.MODELS`), the timm and torchvision
models of the allow-lists (:mod:`gacd_core.architectures`: built with random weights, the user's file
supplies them) and the entries of RobustBench's model zoo (:mod:`gacd_core.zoo`, the committed table):
their dataset, threat model, classes, input size, normalisation (and where RobustBench applies it),
preprocessing, leaderboard record, licence and where their weights are. The zoo entries this project
cannot build are listed too, with ``covered: false`` and the reason, so that a user sees why a job
refuses one. Torch-free, like the modules it reads.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query

from gacd_core import catalog, zoo
from gacd_core.architectures import TIMM_PREFIX, architectures, describe
from service.api.deps import Tenant
from service.api.errors import APIError, responses
from service.api.schemas import (
    ModelLeaderboard,
    ModelList,
    ModelNormalization,
    ModelPreprocessing,
    ModelPublic,
    ModelRole,
    ModelSource,
    ModelWeights,
)

router = APIRouter(prefix="/v1/models", tags=["models"])

# Every architecture a job accepts may be a student and a teacher (gacd_core.spec: both check it alike).
ROLES: list[ModelRole] = ["teacher", "student"]


@cache
def models() -> dict[str, ModelPublic]:
    """Every record by name, in ``gacd list``'s order: ours, the library models, the covered
    RobustBench entries, then those not covered."""
    out = {name: _plain(name, "registry", text) for name, text in catalog.MODELS.items()}
    for name, text in architectures().items():
        if not zoo.is_zoo_name(name):
            out[name] = _plain(name, "timm" if name.startswith(TIMM_PREFIX) else "torchvision", text)
    for entry in sorted(zoo.entries(), key=lambda e: not e.covered):  # (stable: the table's order in each)
        out[entry.key] = _entry(entry)
    return out


def _plain(name: str, source: ModelSource, description: str) -> ModelPublic:
    return ModelPublic(name=name, source=source, description=description, covered=True, usable_as=ROLES)


def _entry(e: zoo.ZooEntry) -> ModelPublic:
    return ModelPublic(
        name=e.key,
        source="robustbench",
        description=describe(e),
        covered=e.covered,
        not_covered_reason=e.not_covered_reason,
        usable_as=ROLES if e.covered else [],
        dataset=e.dataset,
        threat=e.threat,
        entry=e.name,
        family=e.family,
        num_classes=e.arch.num_classes,
        input_size=list(e.input_size),
        normalization=ModelNormalization.model_validate(e.normalization.model_dump()),
        preprocessing=ModelPreprocessing.model_validate(e.preprocessing.model_dump()),
        leaderboard=ModelLeaderboard.model_validate(e.leaderboard.model_dump()),
        weights=ModelWeights.model_validate(e.weights.model_dump()),
        licence=e.licence,
        licence_note=e.licence_note,
        source_commit=e.source_commit,
    )


@router.get(
    "",
    response_model=ModelList,
    summary="Every architecture a job or a teacher upload may name, with what is known about it",
    description="Ours, the timm and torchvision models of the allow-lists, and RobustBench's model zoo (the "
    "entries not covered with the reason). The names are those of `gacd list`. Filters combine; a "
    "RobustBench entry's dataset is the only one known, so `dataset` keeps RobustBench entries only.",
    responses=responses(422),
)
def list_models(
    tenant: Tenant,
    source: Annotated[ModelSource | None, Query(description="only the models of this source")] = None,
    dataset: Annotated[zoo.Dataset | None, Query(description="only the RobustBench entries trained on it")] = None,
    covered: Annotated[
        bool | None, Query(description="only those a job accepts (true), or the RobustBench entries it refuses")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="a part of the name or of the description, in any case")
    ] = None,
) -> dict[str, Any]:
    text = q.casefold() if q else None
    data = [
        m
        for m in models().values()
        if (source is None or m.source == source)
        and (dataset is None or m.dataset == dataset)
        and (covered is None or m.covered == covered)
        and (text is None or text in m.name.casefold() or text in m.description.casefold())
    ]
    return {"data": data}


@router.get(
    "/{model:path}",
    response_model=ModelPublic,
    summary="Get a model by its name (robustbench:<dataset>/<threat>/<entry> included)",
    responses=responses(404),
)
def get_model(model: str, tenant: Tenant) -> ModelPublic:
    found = models().get(model)
    if found is None:
        raise _unknown(model)
    return found


def _unknown(name: str) -> APIError:
    """404 ``not_found`` saying why ``name`` is none (:func:`gacd_core.catalog.arch_refusal`: the valid
    choices), with the closest names in the message and one ``details`` item each."""
    message = catalog.arch_refusal(name) or f"unknown model {name!r}"
    if zoo.is_zoo_name(name):
        try:
            zoo.lookup(name)
            close: list[str] = []
        except zoo.ZooEntryError as exc:
            close = exc.suggestions  # (the refusal's message names them already)
    else:
        close = difflib.get_close_matches(name, list(models()), n=5, cutoff=0.6)
        if close:
            message += f"; closest: {', '.join(close)}"
    return APIError(404, "not_found", message, "model", details=[{"field": "model", "suggestion": s} for s in close])
