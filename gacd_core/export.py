"""``student.onnx``: a trained model exported to ONNX, and checked against PyTorch with ONNX Runtime.

The graph takes what the PyTorch model takes: ``pixels``, float32 RGB images in [0, 1], NCHW, with a
dynamic batch dimension (``batch``) and the fixed image size of the training data; normalisation is
the first operation inside the graph, so a deployment feeds raw pixels scaled to [0, 1] and nothing
else. It returns ``logits`` (``batch`` x classes, before softmax). The file's ``metadata_props`` say so
(``gacd.input``, ``gacd.normalization``, ``gacd.mean``, ``gacd.std``) and carry the architecture,
the class names and the opset, so the file explains itself to ONNX Runtime, TensorRT or OpenVINO users.

The export uses torch.onnx's exporter (``dynamo=True``) at opset :data:`OPSET`, on the CPU in float32;
the same weights give the same bytes. :func:`verify_onnx` runs the file in ONNX Runtime (CPU) on real
test images and compares logits and predictions with PyTorch's; every job records that check in its
report and fails if the graph is wrong (:class:`ExportError`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gacd_core.artifacts import STUDENT_ONNX
from gacd_core.errors import ExportError
from gacd_core.models import ImageClassifier

log = logging.getLogger("gacd.export")
ONNX_FILE = STUDENT_ONNX  # named in gacd_core.artifacts, with every other output
OPSET = 18
FORMAT = "gacd-onnx/1"
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
INPUT_CONVENTION = "float32 RGB pixels in [0, 1], NCHW, dynamic batch"
NORMALIZATION = "inside the graph: (pixels - mean) / std per channel"
# A graph whose logits differ from PyTorch's by more than this is wrong, not rounded differently.
MAX_ABS_DIFF = 1e-3


def export_onnx(
    model: ImageClassifier,
    path: str | Path,
    *,
    input_size: int = 32,
    info: Mapping[str, Any] | None = None,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` as an ONNX graph to ``path`` (pixels in [0, 1] in, logits out, any batch size).

    Args:
        model: the model; a float32 copy on the CPU in eval mode is exported, ``model`` is left as it is.
        input_size: the height and width of the images.
        info: extra metadata (class names, method, dataset), stored as ``gacd.<key>`` JSON values.
        opset: the ONNX opset.

    Raises:
        ExportError: the exporter failed.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    m = m.to(memory_format=torch.contiguous_format)
    example = torch.rand(2, 3, input_size, input_size)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet("onnxscript", "torch.onnx", "onnx_ir"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                m,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"{model.arch} could not be exported to ONNX: {type(exc).__name__}: {exc}") from None
    assert program is not None
    proto = program.model_proto
    meta = {
        "gacd.format": FORMAT,
        "gacd.arch": model.arch,
        "gacd.num_classes": str(model.num_classes),
        "gacd.input": f"{INPUT_NAME}: {INPUT_CONVENTION}, {input_size}x{input_size}",
        "gacd.output": f"{OUTPUT_NAME}: (batch, {model.num_classes}) logits, before softmax",
        "gacd.normalization": NORMALIZATION,
        "gacd.mean": json.dumps([float(v) for v in model.mean]),
        "gacd.std": json.dumps([float(v) for v in model.std]),
        "gacd.opset": str(opset),
        **{f"gacd.{k}": json.dumps(v) for k, v in (info or {}).items()},
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"{model.arch} from gacd: {INPUT_CONVENTION}; normalisation {NORMALIZATION}"
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(proto, str(tmp))
    tmp.replace(path)
    return path


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The exporter logs every optimisation pass at INFO: keep job logs to what a user reads."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def verify_onnx(
    path: str | Path, model: ImageClassifier, images: torch.Tensor, *, batch_size: int = 256
) -> dict[str, Any]:
    """Compare ONNX Runtime's logits with PyTorch's on ``images``.

    Args:
        path: the ONNX file.
        model: the PyTorch model it was exported from (run in float32 on the CPU, eval mode).
        images: uint8 (N, C, H, W) images, or floats in [0, 1].
        batch_size: images per run (the check also exercises the dynamic batch: the last batch is smaller).

    Returns:
        ``max_abs_diff`` (largest difference of any logit), ``agreement`` (fraction of identical
        predictions), ``images``, ``opset``, ``onnxruntime`` (its version) and ``provider``.
    """
    import onnxruntime as ort

    images = images.detach().cpu()
    x_all = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst, same, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size].contiguous()
            ref = m(x).numpy()
            got = session.run(None, {name: x.numpy()})[0]
            worst = max(worst, float(np.abs(got - ref).max()) if len(x) else 0.0)
            same += int((got.argmax(1) == ref.argmax(1)).sum())
            n += len(x)
    opset = onnx_metadata(path).get("gacd.opset")
    return {
        "file": Path(path).name,
        "opset": int(opset) if opset else None,
        "images": n,
        "max_abs_diff": worst,
        "agreement": same / max(1, n),
        "onnxruntime": ort.__version__,
        "provider": "CPUExecutionProvider",
        "input": INPUT_CONVENTION,
        "normalization": NORMALIZATION,
    }


def export_and_verify(
    model: ImageClassifier,
    path: str | Path,
    images: torch.Tensor,
    *,
    info: Mapping[str, Any] | None = None,
    before_write: Any = None,
) -> dict[str, Any]:
    """Export ``model`` to ``path`` and check it on ``images`` (what every job does, into ``student.onnx``).

    Raises:
        ExportError: the export failed, or its logits differ from PyTorch's by more than
            :data:`MAX_ABS_DIFF` (or are not finite).
    """
    if before_write is not None:
        before_write()
    path = export_onnx(model, path, input_size=int(images.shape[-1]), info=info)
    check = verify_onnx(path, model, images)
    if not math.isfinite(check["max_abs_diff"]) or check["max_abs_diff"] > MAX_ABS_DIFF:
        raise ExportError(
            f"{path.name} disagrees with the PyTorch model: max |logit difference| {check['max_abs_diff']:.3g} "
            f"> {MAX_ABS_DIFF} on {check['images']} test images"
        )
    log.info(
        "%s: opset %s, max |logit diff| %.2e, %.2f%% identical predictions on %d test images (ONNX Runtime %s)",
        path.name,
        check["opset"],
        check["max_abs_diff"],
        100 * check["agreement"],
        check["images"],
        check["onnxruntime"],
    )
    return check


__all__ = [
    "MAX_ABS_DIFF",
    "ONNX_FILE",
    "OPSET",
    "ExportError",
    "export_and_verify",
    "export_onnx",
    "onnx_metadata",
    "verify_onnx",
]
