"""Saving and loading model weights. Uploaded weights are data, never code.

Our format is a ``.safetensors`` file whose metadata names the architecture, the number of classes
and the input normalisation, so :func:`load_weights` rebuilds the model from the file alone. Weights
from elsewhere (a ``.safetensors`` without our metadata, or a state_dict in any of
:data:`gacd_core.artifacts.STATE_DICT_SUFFIXES`) load through :func:`load_model_file` given the
architecture; the number of classes is read from the classifier's shape, and the normalisation is
decided by :func:`gacd_core.normalization.resolve_input`: the file's (our metadata, RobustBench-style
``mu``/``sigma`` buffers), else the caller's, else none (identity).
Pickled files are read with ``torch.load(weights_only=True)``, which refuses any pickle that would
build objects other than tensors and plain containers.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from gacd_core import catalog
from gacd_core.artifacts import weights_format, weights_suffixes_text
from gacd_core.errors import GACDError, UnknownNameError, WeightsError
from gacd_core.models.base import ImageClassifier
from gacd_core.models.registry import create_model
from gacd_core.normalization import IDENTITY, NormalizationError, resolve, resolve_input, same
from gacd_core.zoo import ZooEntry, is_zoo_name, lookup

FORMAT = "gacd-model/1"
# Containers that training scripts commonly wrap a state_dict in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "student", "last")  # last: Andriushchenko2020
# Prefixes added by DataParallel, torch.compile or wrappers.
_PREFIXES = ("module.", "_orig_mod.", "model.")
# Keys some published checkpoints carry for modules their forward never uses (TRADES' WRN).
_IGNORABLE_PREFIXES = ("sub_block1.",)
# Normalisation buffers some published state_dicts carry (RobustBench: mu, sigma).
_NORM_BUFFERS = (("mu", "sigma"), ("mean", "std"))
# Where the classifier lives in the layouts we load (ours and the public code's).
_CLASSIFIER_KEYS = (
    "fc.weight", "linear.weight", "classifier.weight", "head.weight", "logits.weight",
    # timm (ConvNeXt, Swin) and torchvision (EfficientNet, ConvNeXt, MobileNetV3, ViT) heads
    "head.fc.weight", "classifier.1.weight", "classifier.2.weight", "classifier.3.weight", "heads.head.weight",
)  # fmt: skip


def save_weights(model: ImageClassifier, path: str | Path, info: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` (.safetensors) with the metadata :func:`load_weights` needs.

    Args:
        info: extra JSON-serialisable facts to keep with the weights (dataset, class names, method).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "arch": model.arch,
        "num_classes": str(model.num_classes),
        "mean": json.dumps(list(model.mean)),
        "std": json.dumps(list(model.std)),
        "normalization_source": model.normalization_source,
        "info": json.dumps(dict(info or {})),
    }
    if model.input_size is not None:  # the side a library or zoo model is built for
        meta["input_size"] = str(model.input_size)
    tmp = path.with_name(path.name + ".tmp")
    write_safetensors(state, tmp, meta)
    os.replace(tmp, path)
    return path


_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}  # fmt: skip


def write_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write the safetensors format byte for byte reproducibly.

    ``safetensors.torch.save_file`` writes the header's keys in hash order, so saving the same weights
    twice gives different bytes. Here the header lists the metadata and the tensors in sorted order,
    so the same weights and metadata always give the same file and the same SHA-256 (the format:
    an 8-byte little-endian header length, the JSON header padded with spaces to 8 bytes, the data).
    """
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        if t.dtype not in _DTYPES:
            raise WeightsError(f"cannot store {name} of dtype {t.dtype}")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for data in blobs:
            f.write(data)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a .safetensors file ({} when it has none)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{Path(path).name} is not a readable .safetensors file: {exc}") from None


def read_info(path: str | Path) -> dict[str, Any]:
    """The ``info`` mapping saved with :func:`save_weights`."""
    meta = read_metadata(path)
    try:
        info = json.loads(meta.get("info", "{}"))
    except json.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def load_weights(path: str | Path, map_location: str | torch.device = "cpu") -> ImageClassifier:
    """Rebuild a model saved by :func:`save_weights` from the file alone."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no such file: {path}")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise WeightsError(
            f"{path.name} has no gacd metadata (architecture, classes, normalisation); "
            "load it with load_model_file(path, arch=..., num_classes=...)"
        )
    return load_model_file(path, map_location=map_location)


def load_model_file(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    normalization: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    map_location: str | torch.device = "cpu",
    check_forward: bool = True,
    input_size: int = 32,
) -> ImageClassifier:
    """Load weights from a .safetensors file or a state_dict file into an architecture: a registered
    one, ``timm:<name>``, ``torchvision:<name>`` or ``robustbench:<dataset>/<threat>/<entry>``.

    Values given here must agree with the file's metadata when it has ours. A file without it needs
    ``arch``; ``num_classes`` defaults to the classifier's output size in the file. The normalisation
    is :func:`~gacd_core.normalization.resolve_input`'s: the file's (our metadata, ``mu``/``sigma``
    buffers), which a preset ``normalization`` or ``mean``/``std`` given here must agree with, else
    those, else none; the model's ``normalization_source`` says which (``file``, ``user``,
    ``default``). The loaded model is checked: every key and shape matches the architecture, every
    value is finite and, with ``check_forward``, a forward pass gives finite logits of the right shape.

    A RobustBench entry's normalisation is its record's (``source`` ``entry``) when the file states
    none: its checkpoint files carry no ``mean``/``std`` since RobustBench d2d996d, and the identity
    would mis-normalise it without a word; values asked for here must agree with the entry's. Its
    number of classes and input side are the record's. A library model is built for
    ``input_size`` (or the side our metadata records) and its normalisation is explicit: the file's
    or the caller's, never timm's ``pretrained_cfg``.

    Args:
        input_size: the side of the images the model will see (the dataset's); the check's forward
            pass uses it. A model built for another side resizes inside (:meth:`ImageClassifier.resize`).

    Raises:
        WeightsError: with a message that says what is wrong (mismatched keys and shapes listed); its
            ``field`` is ``arch`` or ``num_classes`` when the fix is to give that value, and
            ``normalization``, ``mean`` or ``std`` when those were asked for wrongly.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no such file: {path}")
    kind = weights_format(path.name)
    stated: tuple[list[float], list[float]] | None = None
    origin: str | None = None
    built_side: int | None = input_size
    if kind == "safetensors":
        meta = read_metadata(path)
        if meta.get("format") == FORMAT:
            arch, num_classes, stated = _merge_metadata(meta, arch, num_classes)
            origin = meta.get("normalization_source")
            built_side = int(meta["input_size"]) if meta.get("input_size", "").isdigit() else built_side
        state = _read_safetensors(path)
    elif kind == "state_dict":
        state = _read_torch_state(path)
    else:
        raise WeightsError(f"unsupported weights file {path.name!r}: use {weights_suffixes_text()}")
    state = _strip_prefixes(state)
    buffers = _pop_norm_buffers(state, path.name)
    entry = _zoo_entry(arch)
    try:
        if entry is not None and stated is None:
            _agrees_with_entry(entry, normalization, mean, std)
        default = _entry_normalization(entry)
        norm = resolve_input(
            normalization,
            mean,
            std,
            metadata=stated,
            origin=origin,
            buffers=buffers,
            default=default if default is not None else IDENTITY,
            default_source="entry" if default is not None else "default",
            file=path.name,
        )
    except NormalizationError as exc:
        raise WeightsError(exc.message, field=exc.field) from None
    if arch is None:
        raise WeightsError(
            f"{path.name} has no gacd metadata, so it does not say its architecture: give arch", field="arch"
        )
    if num_classes is None:
        num_classes = _classifier_size(state, path.name, entry.arch.num_classes if entry is not None else None)
    try:
        model = create_model(arch, num_classes=num_classes, mean=norm.mean, std=norm.std, input_size=built_side)
    except UnknownNameError:
        raise
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        raise WeightsError(f"cannot build {arch!r}: {exc}") from None
    model.normalization_source = norm.source
    model.normalization_origin = norm.origin
    load_state(model, model.adapt_state(state), source=path.name)
    if check_forward:
        check_model(model, input_size=input_size)
    return model.to(map_location)


def load_state(model: ImageClassifier, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Strictly load ``state`` into ``model`` after normalising common wrappers, with a readable error."""
    state = {k: v for k, v in _strip_prefixes(dict(state)).items() if not k.startswith(_IGNORABLE_PREFIXES)}
    target = model.weights_module()
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs {model.arch} {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_some(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches ({_some(shapes)})")
    if problems:
        raise WeightsError(
            f"{source} does not fit {model.arch} with {model.num_classes} classes: " + "; ".join(problems)
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsError(f"{source} holds NaN or infinite values in {len(bad)} tensors ({_some(bad)})")
    target.load_state_dict({k: v for k, v in state.items()}, strict=True)


def check_model(model: ImageClassifier, input_size: int = 32) -> None:
    """A forward pass on two random images must give finite logits of shape (2, num_classes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
            out = model(x.to(next(model.parameters()).device))
    except RuntimeError as exc:
        raise WeightsError(f"a forward pass of {model.arch} failed: {exc}") from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, model.num_classes):
        raise WeightsError(f"{model.arch} gave outputs of shape {tuple(out.shape)}, expected (2, {model.num_classes})")
    if not bool(torch.isfinite(out).all()):
        raise WeightsError(f"{model.arch} gives non-finite logits on a forward pass")


# --------------------------------------------------------------------------------------------------
def _merge_metadata(
    meta: dict[str, str], arch: str | None, num_classes: int | None
) -> tuple[str, int, tuple[list[float], list[float]]]:
    """The architecture, classes and (mean, std) our metadata states; ``arch`` and ``num_classes``
    given must agree (the normalisation is held to it by :func:`resolve_input`)."""
    try:
        f_arch = meta["arch"]
        f_classes = int(meta["num_classes"])
        f_mean = [float(v) for v in json.loads(meta["mean"])]
        f_std = [float(v) for v in json.loads(meta["std"])]
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"corrupt gacd metadata: {exc}") from None
    if arch is not None and arch != f_arch:
        raise WeightsError(f"the file holds a {f_arch!r}, not a {arch!r}")
    if num_classes is not None and num_classes != f_classes:
        raise WeightsError(f"the file's model has {f_classes} classes, not {num_classes}")
    return f_arch, f_classes, (f_mean, f_std)


def _pop_norm_buffers(state: dict[str, torch.Tensor], name: str) -> tuple[list[float], list[float]] | None:
    """Remove top-level normalisation buffers (RobustBench's ``mu``/``sigma``) and return their values
    (what the file states, for :func:`resolve_input`)."""
    for m_key, s_key in _NORM_BUFFERS:
        if m_key in state and s_key in state:
            m, s = state[m_key], state[s_key]
            if m.numel() != 3 or s.numel() != 3:
                raise WeightsError(f"{name}: {m_key}/{s_key} need three values (RGB), got {m.numel()} and {s.numel()}")
            mean = [float(v) for v in m.flatten().tolist()]
            std = [float(v) for v in s.flatten().tolist()]
            if not all(math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
                raise WeightsError(f"{name}: {s_key} must be finite and > 0, and {m_key} finite")
            del state[m_key], state[s_key]
            return mean, std
    return None


def _zoo_entry(arch: str | None) -> ZooEntry | None:
    """The covered RobustBench entry ``arch`` names, or None for other names (refused later if unknown)."""
    if arch is None or not is_zoo_name(arch) or catalog.arch_refusal(arch) is not None:
        return None
    return lookup(arch)


def _entry_normalization(entry: ZooEntry | None) -> tuple[list[float], list[float]] | None:
    if entry is None or entry.normalization.mean is None or entry.normalization.std is None:
        return None
    return list(entry.normalization.mean), list(entry.normalization.std)


def _agrees_with_entry(
    entry: ZooEntry, name: str | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> None:
    """A normalisation asked for with a zoo entry must be the entry's (its network applies that one)."""
    asked = resolve(name, mean, std)
    stated = _entry_normalization(entry)
    if asked is None or stated is None or same(asked, stated):
        return
    raise NormalizationError(
        f"{entry.key} normalises with mean {stated[0]} and std {stated[1]} ({entry.normalization.applied}); "
        f"mean {list(asked[0])} and std {list(asked[1])} contradict it: leave the normalisation out to use the entry's",
        "normalization" if name is not None else "mean",
    )


def _classifier_size(state: Mapping[str, torch.Tensor], name: str, default: int | None = None) -> int:
    """The number of classes, read from the classifier's weight in a state_dict (else ``default``)."""
    for key in _CLASSIFIER_KEYS:
        w = state.get(key)
        if w is not None and w.ndim == 2:
            return int(w.shape[0])
    if default is not None:
        return default
    raise WeightsError(
        f"{name}: no classifier weight ({', '.join(_CLASSIFIER_KEYS)}) tells the number of classes: give num_classes",
        field="num_classes",
    )


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        out: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for k in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                out[k] = f.get_tensor(k)
        return out
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path.name} is not a readable .safetensors file: {exc}") from None


def _read_torch_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path.name} holds more than tensors and was refused (weights are read with "
            f"weights_only=True and never executed): {str(exc).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, GACDError) as exc:
        raise WeightsError(f"{path.name} is not a readable PyTorch file: {str(exc).splitlines()[0]}") from None
    for _ in range(2):  # unwrap {"state_dict": {...}} and the like
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path.name} does not hold a state_dict (a mapping of names to tensors)")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise WeightsError(f"{path.name}: the state_dict holds non-tensor entries ({_some(others)})")
    return state


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state:
        changed = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _some(items: list[str], n: int = 8) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... {len(items) - n} more" if len(items) > n else "")
