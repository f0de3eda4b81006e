"""The names of the files a job writes and of the weights files the project reads. Torch-free.

Every layer spells these names: the core writes them, the worker lists them, the API serves them and
the client downloads them; so they are named here once. The same goes for the weights a user brings:
one list of suffixes, read by :mod:`gacd_core.models.io` and accepted by the upload route.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Literal

STUDENT_WEIGHTS = "student.safetensors"  # the trained model, with its gacd metadata
STUDENT_ONNX = "student.onnx"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
TRAIN_LOG = "train.log"  # written by the service's worker only
CHECKPOINT = "checkpoint.pt"  # the per-epoch checkpoint: resumes a job, never listed as an output
# Per-image correctness of the student's evaluation, packed bits (gacd_core/per_image.py): for paired tests
PER_IMAGE = "per_image.json"

# A job's outputs, in the order a listing shows them (the service lists those that exist).
JOB_OUTPUTS = (STUDENT_WEIGHTS, STUDENT_ONNX, REPORT_JSON, REPORT_HTML, TRAIN_LOG)
# What the command line writes into --out (it keeps no train.log; student.onnx on request only).
CLI_OUTPUTS = (STUDENT_WEIGHTS, REPORT_JSON, REPORT_HTML)

# The media type each output is served with; anything else (the weights) is application/octet-stream.
MEDIA_TYPES = {
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
OCTET_STREAM = "application/octet-stream"

WeightsFormat = Literal["safetensors", "state_dict"]
SAFETENSORS_SUFFIXES = (".safetensors",)
# A state_dict saved by torch.save, read with torch.load(weights_only=True): .bin as in
# pytorch_model.bin, .t7 as ARD's torch.save({'net': ...}) files.
STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".t7")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + STATE_DICT_SUFFIXES
# An uploaded teacher is kept under one name per format (validation rewrites it as safetensors).
TEACHER_FILES: dict[WeightsFormat, str] = {"safetensors": "weights.safetensors", "state_dict": "weights.pt"}


def media_type(name: str) -> str:
    """The media type an output named ``name`` is served with."""
    return MEDIA_TYPES.get(PurePath(name).suffix.lower(), OCTET_STREAM)


def weights_format(name: str) -> WeightsFormat | None:
    """The format a weights file's name says (by its suffix, in any case), or None for one we do not read."""
    suffix = PurePath(name).suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if suffix in STATE_DICT_SUFFIXES:
        return "state_dict"
    return None


def weights_suffixes_text() -> str:
    """The accepted suffixes for messages and help: ``.safetensors, or .pt/.pth/.bin/.t7 holding a state_dict``."""
    return f"{'/'.join(SAFETENSORS_SUFFIXES)}, or {'/'.join(STATE_DICT_SUFFIXES)} holding a state_dict"


__all__ = [
    "CHECKPOINT",
    "CLI_OUTPUTS",
    "JOB_OUTPUTS",
    "MEDIA_TYPES",
    "REPORT_HTML",
    "REPORT_JSON",
    "SAFETENSORS_SUFFIXES",
    "STATE_DICT_SUFFIXES",
    "STUDENT_ONNX",
    "STUDENT_WEIGHTS",
    "TEACHER_FILES",
    "TRAIN_LOG",
    "WEIGHTS_SUFFIXES",
    "media_type",
    "weights_format",
    "weights_suffixes_text",
]
