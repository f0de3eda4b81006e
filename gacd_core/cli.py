"""The ``gacd`` command line.

    gacd list                                   models, methods, attacks, datasets
    gacd train    --method at --arch resnet18 --out runs/teacher
    gacd distill  --method gacd --teacher runs/teacher/student.safetensors --student-arch mobilenetv2 --out runs/s
    gacd evaluate --weights runs/s/student.safetensors --teacher runs/teacher/student.safetensors --out runs/eval

Each takes a specification file (``--spec``, JSON or YAML) and flags that override it; ``--set
a.b=value`` overrides any field. Each writes ``student.safetensors`` (train, distill), ``report.json``
and ``report.html`` into ``--out``. A training job interrupted (Ctrl-C, a crash) continues from its
last epoch when the same command runs again. ``--gpus N`` / ``--processes N`` train one job in N
processes (:mod:`gacd_core.launch`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gacd_core import catalog
from gacd_core.architectures import architectures
from gacd_core.artifacts import CLI_OUTPUTS, STATE_DICT_SUFFIXES
from gacd_core.errors import GACDError, SpecError
from gacd_core.progress import EpochCompleted, ProgressEvent, Stage, StageChanged, TrainingProgress, TrainingStarted
from gacd_core.report_model import Report
from gacd_core.spec import load_spec_file, method_names, parse_spec, parse_teacher, set_path
from gacd_core.zoo import entries as zoo_entries
from gacd_core.zoo import is_zoo_name

# Where a flag lands in the job specification (error messages name the flag too).
FLAGS: dict[str, str] = {
    "method": "method",
    "arch": "student.arch",
    "student_arch": "student.arch",
    "teacher": "teacher.weights",
    "teacher_arch": "teacher.arch",
    "teacher_normalization": "teacher.normalization",
    "teacher_mean": "teacher.mean",
    "teacher_std": "teacher.std",
    "allow_weak_teacher": "teacher.allow_weak",
    "dataset": "dataset.name",
    "data_root": "dataset.root",
    "data_path": "dataset.path",
    "train_subset": "dataset.train_subset",
    "test_subset": "dataset.test_subset",
    "val_size": "dataset.val_size",
    "epochs": "hyperparameters.epochs",
    "batch_size": "hyperparameters.batch_size",
    "lr": "hyperparameters.lr",
    "eval_subset": "evaluation.subset",
    "autoattack": "evaluation.autoattack",
    "autoattack_subset": "evaluation.autoattack_subset",
    "device": "device",
    "precision": "precision",
    "seed": "seed",
    "gpus": "resources.gpus",
    "processes": "resources.processes",
}
FIELD_TO_FLAG = {v: "--" + k.replace("_", "-") for k, v in FLAGS.items() if k not in ("arch", "student_arch")}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", type=Path, help="job specification file (JSON or YAML)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--dataset", help=f"one of: {', '.join(catalog.DATASETS)}")
    p.add_argument("--data-root", help="folder holding the dataset (default $GACD_DATA_ROOT or ./data)")
    p.add_argument(
        "--data-path",
        help="custom: an .npz file or an ImageFolder directory; imagefolder, shards: a folder relative to "
        "$GACD_DATA_ROOTS (or --data-root), or a local absolute path",
    )
    p.add_argument("--train-subset", type=int, help="train on this many images (class-stratified)")
    p.add_argument("--test-subset", type=int, help="evaluate on this many test images (class-stratified)")
    p.add_argument("--eval-subset", type=int, help="run the protocol on this many of the test images")
    p.add_argument("--autoattack", action="store_true", default=None, help="also run standard AutoAttack")
    p.add_argument("--autoattack-subset", type=int, help="AutoAttack on this many images (default 1000)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any field, e.g. --set hyperparameters.method_params.reweight=hard",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _rgb(text: str) -> list[float]:
    """Three numbers, as ``r,g,b`` or a JSON list (argparse reports a ValueError naming the flag)."""
    from gacd_core.normalization import parse_rgb

    return list(parse_rgb(text))


_rgb.__name__ = "three numbers r,g,b"  # what argparse names in its error message


def _teacher(p: argparse.ArgumentParser, what: str) -> None:
    from gacd_core.normalization import PRESET_HELP

    kinds = "/".join(STATE_DICT_SUFFIXES)
    p.add_argument("--teacher", help=f"{what} (.safetensors from gacd, or {kinds} state_dict with --teacher-arch)")
    p.add_argument(
        "--teacher-arch",
        help="the teacher's architecture, for weights without gacd metadata: ours, timm:<name>, torchvision:<name> "
        "or robustbench:<dataset>/<threat>/<entry> (gacd list)",
    )
    p.add_argument(
        "--teacher-normalization",
        choices=list(PRESET_HELP),
        help="the teacher's input normalisation, for weights without gacd metadata; default none "
        "(mean 0, std 1), as TRADES, RobustBench, ARD, RSLAD and MART train: "
        + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
    )
    p.add_argument("--teacher-mean", type=_rgb, metavar="R,G,B", help="the teacher's input mean (with --teacher-std)")
    p.add_argument("--teacher-std", type=_rgb, metavar="R,G,B", help="the teacher's input std (with --teacher-mean)")
    p.add_argument(
        "--allow-weak-teacher",
        action="store_true",
        default=None,
        help="use the teacher even when its accuracy check finds it at or near chance (not recommended)",
    )


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--val-size", type=int, help="hold out this many training images for per-epoch monitoring")
    p.add_argument("--no-resume", action="store_true", help="ignore a checkpoint left in --out")
    p.add_argument("--gpus", type=int, help="train on this many GPUs of this machine, one process each (torchrun)")
    p.add_argument("--processes", type=int, help="train in this many CPU processes (torchrun, gloo), instead of --gpus")


def _either(names: list[str]) -> str:
    """``a, b or c``."""
    return " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def build_parser() -> argparse.ArgumentParser:
    teacherless, distilling = _either(method_names(needs_teacher=False)), _either(method_names(needs_teacher=True))
    parser = argparse.ArgumentParser(prog="gacd", description="Robust model compression: GACD and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list models, methods, attacks and datasets")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("train", help=f"train a model without a teacher ({teacherless}): how to make a teacher")
    p.add_argument("--method", default=None, help=f"{teacherless} (default at)")
    p.add_argument("--arch", help="architecture (gacd list)")
    _common(p)
    _training(p)
    p = sub.add_parser("distill", help="distil a teacher into a student")
    p.add_argument("--method", default=None, help=f"{distilling} (default gacd)")
    _teacher(p, "teacher weights")
    p.add_argument(
        "--student-arch", help="the student's architecture: ours, timm:<name> or torchvision:<name> (gacd list)"
    )
    _common(p)
    _training(p)
    p = sub.add_parser("evaluate", help="evaluate saved weights under the protocol")
    p.add_argument("--weights", type=Path, required=True, help="the model to evaluate (.safetensors from gacd)")
    _teacher(p, "a teacher to compare with (agreement, CKA, compression)")
    _common(p)
    p = sub.add_parser("export", help="export saved weights to ONNX (pixels in [0, 1] in, logits out)")
    p.add_argument("--onnx", type=Path, required=True, metavar="WEIGHTS", help="the model (.safetensors from gacd)")
    p.add_argument("--out", type=Path, help="the .onnx file to write (default: WEIGHTS with the suffix .onnx)")
    p.add_argument("--data-root", help="check ONNX Runtime against PyTorch on this folder's test images of the "
                   "model's dataset (default: 512 random images)")  # fmt: skip
    p.add_argument("--test-subset", type=int, help="check on this many test images (default all)")
    _plugins(sub)
    return parser


PLUGIN_GROUP = "gacd.commands"


def _plugins(sub: Any) -> None:
    """Commands other packages add (the HTTP service adds ``serve``, ``submit``, ``status``, ...).

    Each entry point of the ``gacd.commands`` group is a ``register(subparsers)`` function whose
    parsers set ``run`` to a function of the parsed arguments. gacd_core itself imports none of them.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            register = ep.load()
        except ImportError as exc:  # the package's optional dependencies are not installed
            logging.getLogger("gacd").debug("commands of %s unavailable: %s", ep.value, exc)
            continue
        register(sub)


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def build_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The specification file, then flags, then ``--set`` overrides, as one dict."""
    data: dict[str, Any] = load_spec_file(args.spec) if args.spec else {}
    if args.command == "train":
        data.setdefault("method", "at")
    elif args.command == "distill":
        data.setdefault("method", "gacd")
    elif args.command == "evaluate":
        data["method"] = "natural"  # evaluation trains nothing; the method is read from the weights
    for name, path in FLAGS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        set_path(data, path, str(value) if isinstance(value, Path) else value)
    for item in args.set:
        if "=" not in item:
            raise SpecError([("--set", f"expected FIELD=VALUE, got {item!r}")])
        key, value = item.split("=", 1)
        set_path(data, key.strip(), _parse_value(value))
    method = data.get("method")
    teacherless = method_names(needs_teacher=False)
    if args.command == "train" and method not in teacherless:
        raise SpecError(
            [
                (
                    "method",
                    f"gacd train makes models without a teacher: --method {_either(teacherless)}, not {method!r}"
                    " (use gacd distill for the others)",
                )
            ]
        )
    if args.command == "distill" and method in teacherless:
        raise SpecError([("method", f"{method!r} uses no teacher: use gacd train --method {method}")])
    return data


class _Display:
    """A tqdm progress bar over training steps, with stage lines for the rest of the job."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def progress(self, event: ProgressEvent) -> None:
        """The job's progress events: training moves the bar, a stage prints its line."""
        if self.quiet:
            return
        if isinstance(event, StageChanged):
            self._stage(event)
        elif isinstance(event, TrainingProgress):
            self._training(event)

    def _training(self, p: TrainingProgress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(
                total=p.total_steps,
                initial=p.global_step - p.step,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
                desc="training",
            )
        self.bar.update(p.global_step - self.bar.n)
        if isinstance(p, TrainingStarted):
            return
        parts = " ".join(f"{k}={v:.3g}" for k, v in list(p.parts.items())[:4])
        self.bar.set_postfix_str(
            f"epoch {p.epoch}/{p.epochs} loss={p.loss:.4g} {parts} {p.images_per_second:.0f} img/s"
        )
        if isinstance(p, EpochCompleted):
            r = p.record
            val = ""
            if r.get("val_pgd_acc") is not None:
                val = f", val clean {100 * r['val_clean_acc']:.1f}% pgd10 {100 * r['val_pgd_acc']:.1f}%"
            self.bar.write(
                f"epoch {p.epoch}/{p.epochs}: loss {r['loss']:.4f}, train acc {100 * r['train_acc']:.1f}%"
                f"{val}, {r['images_per_second']:.0f} img/s"
            )

    def _stage(self, event: StageChanged) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if event.fraction == 0.0 or event.stage in (Stage.LOADING_DATA, Stage.LOADING_TEACHER):
            print(f"{event.stage.value} ...", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(report: Report, out: Path) -> None:
    from gacd_core.evaluation import summary_line

    keys = catalog.ACCURACY_KEYS
    student = report.student.arch if report.student is not None else None
    if report.metrics is not None:
        print(f"student ({student}): {summary_line(report.metrics.accuracies(), keys)}")
    if report.teacher_metrics is not None:
        teacher = report.teacher.arch if report.teacher is not None else None
        print(f"teacher ({teacher}): {summary_line(report.teacher_metrics.accuracies(), keys)}")
    comp = report.compression
    if comp is not None and comp.params_ratio:
        speed = f", {comp.speedup:.2f}x faster" if comp.speedup else ""
        print(f"compression: {comp.params_ratio:.1f}x fewer parameters, {comp.macs_ratio or 0:.1f}x fewer MACs{speed}")
    files = [f for f in CLI_OUTPUTS if (out / f).exists()]
    print(f"wrote {', '.join(str(out / f) for f in files)}")


def _list(as_json: bool) -> int:
    foreign = architectures()
    tables = {
        "models": catalog.MODELS,
        "library models (your weights file; pretrained=False)": {
            n: d for n, d in foreign.items() if not is_zoo_name(n)
        },
        "robustbench entries (download the entry's weights file, name the entry)": {
            n: d for n, d in foreign.items() if is_zoo_name(n)
        },
        "robustbench entries not covered": {e.key: e.not_covered_reason or "" for e in zoo_entries() if not e.covered},
        "methods": {name: m.description for name, m in catalog.METHODS.items()},
        "attacks": catalog.ATTACKS,
        "datasets": {name: d.description for name, d in catalog.DATASETS.items()},
    }
    if as_json:
        print(json.dumps(tables, indent=2))
        return 0
    for title, table in tables.items():
        print(f"{title}:")
        width = max(len(k) for k in table)
        for name, text in table.items():
            print(f"  {name:<{width}}  {text}")
    return 0


def _error(exc: GACDError) -> int:
    fields = exc.errors if isinstance(exc, SpecError) else [(exc.field or "", exc.message)]
    for field, message in fields:
        flag = FIELD_TO_FLAG.get(field)
        where = f"{field} ({flag})" if flag else field
        print(f"gacd: error: {where}: {message}" if where else f"gacd: error: {message}", file=sys.stderr)
    return 2


def _export(args: argparse.Namespace) -> int:
    """``gacd export --onnx WEIGHTS``: write the ONNX graph, check it against PyTorch, print the check."""
    import torch

    from gacd_core.export import MAX_ABS_DIFF, export_and_verify
    from gacd_core.models import load_weights, read_info

    weights: Path = args.onnx
    model = load_weights(weights)
    info = read_info(weights)
    size = int(info.get("input_size") or 32)
    if args.data_root:
        from gacd_core.data import load_dataset
        from gacd_core.spec import DatasetSpec

        name = info.get("dataset") or "cifar10"
        dspec = DatasetSpec(name=name, root=args.data_root, test_subset=args.test_subset, classes=info.get("classes"))
        images, where = load_dataset(dspec).test.decoded().images, f"{name} test images"
    else:
        gen = torch.Generator().manual_seed(0)
        images, where = torch.rand(args.test_subset or 512, 3, size, size, generator=gen), "random images"
    out = args.out or weights.with_suffix(".onnx")
    keep = ("method", "dataset", "class_names", "classes", "input_size")
    check = export_and_verify(model, out, images, info={k: info[k] for k in keep if k in info})
    print(
        f"wrote {out}: opset {check['opset']}, input {check['input']}; ONNX Runtime vs PyTorch on "
        f"{check['images']} {where}: max |logit diff| {check['max_abs_diff']:.2e} (limit {MAX_ABS_DIFF}), "
        f"{100 * check['agreement']:.2f}% identical predictions"
    )
    return 0


def _launch(spec: Any, args: argparse.Namespace) -> int:
    """A job of several processes (``--gpus``, ``--processes``): torchrun's, supervised here."""
    from gacd_core.launch import launch_job

    code = launch_job(spec, args.out, resume=not args.no_resume, quiet=args.quiet)
    if code == 130:
        print(
            f"\ngacd: stopped; run the same command to continue from the last checkpoint in {args.out}",
            file=sys.stderr,
        )
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list(args.json)
    if args.command == "export":
        try:
            return _export(args)
        except GACDError as exc:
            return _error(exc)
    if getattr(args, "run", None) is not None:  # a command added by a plugin
        return int(args.run(args))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    logging.getLogger("gacd.trainer").setLevel(logging.WARNING)  # the progress bar shows epochs
    display = _Display(args.quiet)
    try:
        data = build_spec(args)
        # evaluate trains nothing, so its teacher is not part of a (teacherless) job specification
        teacher_doc = data.pop("teacher", None) if args.command == "evaluate" else None
        spec = parse_spec(data)
        teacher = parse_teacher(teacher_doc) if teacher_doc else None
        if args.command != "evaluate" and spec.resources.world_size > 1 and "WORLD_SIZE" not in os.environ:
            return _launch(spec, args)
        from gacd_core.jobs import Callbacks, run_evaluation, run_job

        cb = Callbacks(progress=display.progress)
        if args.command == "evaluate":
            report = run_evaluation(args.weights, args.out, spec, teacher=teacher, callbacks=cb)
        else:
            report = run_job(spec, args.out, callbacks=cb, resume=not args.no_resume)
    except GACDError as exc:
        display.close()
        return _error(exc)
    except KeyboardInterrupt:
        display.close()
        print(
            f"\ngacd: interrupted; run the same command to continue from the last checkpoint in {args.out}",
            file=sys.stderr,
        )
        return 130
    display.close()
    _summary(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
