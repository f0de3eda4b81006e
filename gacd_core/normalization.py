"""Input normalisation presets and where a model's normalisation came from. Torch-free.

Every model takes pixels in [0, 1] and normalises them with a layer of its own, ``(x - mean) / std``.
For a weights file from elsewhere that layer is not in the file, so it must be chosen, and choosing it
wrong is silent: the network still gives logits, they are just near chance. The rule here is that a
weights file without our metadata is **not** normalised (``none``: mean 0, std 1) unless it says
otherwise (RobustBench-style ``mu`` / ``sigma`` buffers) or the user does. This is what the public
robust-training code does: TRADES, RobustBench, ARD, RSLAD and MART feed the network raw [0, 1] pixels.

A normalisation always travels with its *source*: ``file`` (our metadata, or buffers in the
state_dict), ``user`` (a flag, a specification field, an upload form field) or ``default`` (none of
them: identity). Reports and teacher records show both.

:func:`resolve_input` is the one place that decides a weights file's normalisation from everything
that can state it, and :func:`resolve` the one place that states the rules of a user's request: mean
and std together or neither, and a preset or values, not both unless they are equal. The CLI and the
job specification, the upload route and the workers all reach them (the route and the specification
through :func:`resolve`, every load of a weights file through :func:`resolve_input`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

RGB = tuple[float, float, float]
IDENTITY: tuple[RGB, RGB] = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
CIFAR10_MEAN: RGB = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: RGB = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN: RGB = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: RGB = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)

NormalizationName = Literal["none", "cifar10", "cifar100", "imagenet"]
PRESETS: dict[str, tuple[RGB, RGB]] = {
    "none": IDENTITY,
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
PRESET_HELP = {
    "none": "no normalisation: the network sees pixels in [0, 1] (TRADES, RobustBench, ARD, RSLAD, MART)",
    "cifar10": f"CIFAR-10 statistics, mean {list(CIFAR10_MEAN)}, std {list(CIFAR10_STD)}",
    "cifar100": f"CIFAR-100 statistics, mean {list(CIFAR100_MEAN)}, std {list(CIFAR100_STD)}",
    "imagenet": f"ImageNet statistics, mean {list(IMAGENET_MEAN)}, std {list(IMAGENET_STD)}",
}
Source = Literal["file", "user", "default", "dataset", "entry"]
SOURCES: dict[str, str] = {
    "entry": "the RobustBench entry's record (gacd_core/zoo): the normalisation its network applies, "
    "which its checkpoint files do not carry",
    "dataset": "the training dataset's channel statistics (students trained here)",
    "file": "read from the weights file (gacd metadata, or mu/sigma buffers in the state_dict)",
    "user": "given by the user (flag, specification field or upload form)",
    "default": "nothing said otherwise: no normalisation (identity), as in public robust-training code",
}


def _close(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def preset_name(mean: Sequence[float], std: Sequence[float]) -> str:
    """The preset ``mean``/``std`` equal (to 1e-4), or ``custom``."""
    for name, (m, s) in PRESETS.items():
        if _close(mean, m) and _close(std, s):
            return name
    return "custom"


def same(a: tuple[Sequence[float], Sequence[float]], b: tuple[Sequence[float], Sequence[float]]) -> bool:
    """Whether two (mean, std) pairs are the same normalisation (to 1e-4)."""
    return _close(a[0], b[0]) and _close(a[1], b[1])


class NormalizationError(ValueError):
    """A normalisation that was asked for wrongly, or that a weights file contradicts.

    Attributes:
        field: the request's field to fix (``mean``, ``std`` or ``normalization``), or None when the
            request contradicts the file (leave the normalisation out to use the file's).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def located(self) -> str:
        """``field: message``, as the job specification and the upload route report it."""
        return f"{self.field}: {self.message}" if self.field else self.message


Pair = tuple[Sequence[float], Sequence[float]]


def resolve(name: str | None, mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[RGB, RGB] | None:
    """The (mean, std) a user asked for with a preset ``name`` and/or explicit values, or None.

    The rules of a request, stated here only: a known preset; mean and std together, or neither; a
    preset or values, not both unless they are equal (to 1e-4).

    Raises:
        NormalizationError: (a ValueError) whose ``field`` names the value to fix.
    """
    if name is not None and name not in PRESETS:
        raise NormalizationError(f"unknown normalisation {name!r}; valid: {', '.join(PRESETS)}", "normalization")
    if (mean is None) != (std is None):
        raise NormalizationError("give both mean and std, or neither", "std" if std is None else "mean")
    if name is not None:
        preset = PRESETS[name]
        if mean is not None and std is not None and not same((mean, std), preset):
            raise NormalizationError(
                f"normalisation {name!r} is mean {list(preset[0])}, std {list(preset[1])}; "
                f"mean {list(mean)} and std {list(std)} contradict it",
                "normalization",
            )
        return preset
    if mean is not None and std is not None:
        return (tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[return-value]
    return None


@dataclass(frozen=True)
class InputNorm:
    """A resolved input normalisation and where it came from.

    Attributes:
        source: ``file``, ``user`` or ``default`` (see :data:`SOURCES`).
        origin: for a file of ours, the source its writer recorded (a student's ``dataset``, say).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: Source
    origin: str | None = None

    def describe(self) -> dict[str, Any]:
        """What reports and teacher records show (:func:`describe`, with ``origin`` when known)."""
        out = describe(self.mean, self.std, self.source)
        if self.origin:
            out["origin"] = self.origin
        return out


def resolve_input(
    name: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    metadata: Pair | None = None,
    origin: str | None = None,
    buffers: Pair | None = None,
    default: Pair = IDENTITY,
    default_source: Source = "default",
    file: str = "the file",
) -> InputNorm:
    """A weights file's input normalisation, from everything that can state it.

    What the file states wins: our ``metadata`` (with the ``origin`` its writer recorded), then the
    ``mu``/``sigma`` ``buffers`` of its state_dict; what a user asks for (a preset ``name`` and/or
    ``mean``/``std``, held to :func:`resolve`'s rules) must agree with it, to 1e-5. Without either,
    the user's request; without that, the architecture's ``default`` (identity: no normalisation).

    Args:
        default_source: where ``default`` comes from (``entry``: a RobustBench entry's record).
        file: the file's name, for messages.

    Raises:
        NormalizationError: a request that breaks :func:`resolve`'s rules (``field`` set), or one
            that the file contradicts (``field`` None).
    """
    asked = _asked(name, mean, std)
    if metadata is not None:
        for key, given, saved in (("mean", asked[0], metadata[0]), ("std", asked[1], metadata[1])):
            if given is not None and len(given) != len(saved):
                raise NormalizationError(f"{key} needs {len(saved)} values (RGB), got {len(given)}")
            if given is not None and not _agree(given, saved):
                raise NormalizationError(f"the file's model normalises with {key} {list(saved)}, not {list(given)}")
    if buffers is not None:
        # our metadata, else a complete request, is what the buffers must agree with
        said = metadata if metadata is not None else _complete(asked)
        if said is not None and not (_agree(said[0], buffers[0]) and _agree(said[1], buffers[1])):
            raise NormalizationError(
                f"{file} normalises with its own mu {list(buffers[0])} and sigma {list(buffers[1])}, "
                f"not mean {list(said[0])} and std {list(said[1])}: leave the normalisation out to use the file's"
            )
    user = resolve(name, mean, std)
    if buffers is not None or metadata is not None:
        stated = buffers if buffers is not None else metadata
        assert stated is not None
        return InputNorm(_floats(stated[0]), _floats(stated[1]), "file", origin if metadata is not None else None)
    if user is not None:
        return InputNorm(_floats(user[0]), _floats(user[1]), "user")
    return InputNorm(_floats(default[0]), _floats(default[1]), default_source)


def parse_rgb(text: str) -> RGB:
    """Three numbers written as a JSON list ``[r, g, b]`` or as ``r,g,b`` (flags, form fields).

    Raises:
        ValueError: anything else.
    """
    stripped = text.strip()
    try:
        parsed = json.loads(stripped) if stripped.startswith("[") else [float(v) for v in stripped.split(",")]
    except ValueError:  # json.JSONDecodeError is one
        raise ValueError("three numbers, as [r, g, b] or r,g,b") from None
    if not isinstance(parsed, list) or len(parsed) != 3 or not all(isinstance(v, int | float) for v in parsed):
        raise ValueError("three numbers, as [r, g, b] or r,g,b")
    return (float(parsed[0]), float(parsed[1]), float(parsed[2]))


def _asked(
    name: str | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    """What a request says of each of mean and std: its values, else its preset's, else nothing."""
    if name is not None and name not in PRESETS:
        resolve(name, mean, std)  # raises: an unknown preset
    preset = PRESETS[name] if name is not None else (None, None)
    return (mean if mean is not None else preset[0], std if std is not None else preset[1])


def _complete(asked: tuple[Sequence[float] | None, Sequence[float] | None]) -> Pair | None:
    mean, std = asked
    return (mean, std) if mean is not None and std is not None else None


def _agree(a: Sequence[float], b: Sequence[float]) -> bool:
    """Equal to float32 precision: what a file stores against what a user typed."""
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7) for x, y in zip(a, b, strict=True))


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def describe(mean: Sequence[float], std: Sequence[float], source: str) -> dict[str, Any]:
    """``{"name", "mean", "std", "source"}``: what reports and teacher records show."""
    return {
        "name": preset_name(mean, std),
        "mean": [round(float(v), 6) for v in mean],  # float32 buffers: 0.4914, not 0.49140000343322754
        "std": [round(float(v), 6) for v in std],
        "source": source,
    }


def text(desc: dict[str, Any]) -> str:
    """One line for terminals and logs, e.g. ``none (mean 0, std 1; source: default)``."""
    name = desc.get("name", "custom")

    def rgb(key: str) -> str:
        return "[" + ", ".join(f"{float(v):.4g}" for v in desc.get(key) or []) + "]"

    values = "mean 0, std 1" if name == "none" else f"mean {rgb('mean')}, std {rgb('std')}"
    return f"{name} ({values}; source: {desc.get('source')})"
