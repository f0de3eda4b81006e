"""The HTML report page: its sections (header, headline numbers, charts, tables, footer) from the typed
report (:class:`~gacd_core.report_model.Report`, read by attribute: a renamed key is an error here, not
a section silently left out), put together with its stylesheet (``report.css``, installed with the
package)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from importlib.resources import files
from typing import Any

from gacd_core import catalog
from gacd_core.report_html import charts, fmt
from gacd_core.report_model import (
    AttackParams,
    AutoAttackParams,
    Compression,
    DatasetSection,
    Environment,
    Epoch,
    Metrics,
    Normalization,
    Protocol,
    Report,
    StudentSection,
    TeacherSection,
)

_REFERENCE = catalog.REFERENCE_ATTACK  # the headline robust accuracy and the per-class chart's attack
_CLEAN = catalog.ACCURACIES["clean"]
_AUTOATTACK = catalog.ACCURACIES["autoattack"]
CSS = (files("gacd_core.report_html") / "report.css").read_text(encoding="utf-8")


def _table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """An HTML table whose first column is a row header. Cells are HTML fragments (already escaped)."""
    head = ""
    if headers:
        head = "<thead><tr>" + "".join(f'<th scope="col">{h}</th>' for h in headers) + "</tr></thead>"
    body = "".join(
        f'<tr><th scope="row">{row[0]}</th>' + "".join(f"<td>{c}</td>" for c in row[1:]) + "</tr>" for row in rows
    )
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def _card(title: str, body: str, *, wide: bool = False) -> str:
    cls = "card wide" if wide else "card"
    return f'<section class="{cls}"><h3>{title}</h3>{body}</section>'


def _code(value: Any) -> str:
    return fmt.DASH if value in (None, "") else f"<code>{fmt.esc(value)}</code>"


def _protocol_summary(report: Report) -> str:
    """One line saying what produced the numbers: threat model, attacks and image counts."""
    protocol = report.protocol or Protocol()
    norm = protocol.norm
    parts = [f"{fmt.norm_name(norm)} ε = {fmt.eps(protocol.eps, norm)}"]
    attacks = [fmt.attack_name(a) for a in protocol.attacks]
    autoattack = protocol.autoattack()
    if autoattack is not None:
        version = f" ({fmt.esc(autoattack.version)})" if autoattack.version else ""
        size = protocol.autoattack_size
        on = f" on {fmt.integer(size)} images" if fmt.num(size) is not None else ""
        attacks.append(f"AutoAttack{version}{on}")
    if attacks:
        parts.append("attacks " + ", ".join(attacks))
    if fmt.num(protocol.test_size) is not None:
        parts.append(f"{fmt.integer(protocol.test_size)} {fmt.split_word(protocol.split)} images")
    if protocol.precision:
        parts.append(fmt.esc(protocol.precision))
    if protocol.seed is not None:
        parts.append(f"seed {fmt.text(protocol.seed)}")
    return " · ".join(parts)


def _provenance(report: Report) -> str:
    env = report.environment or Environment()
    device = fmt.text(env.device)
    if env.device_name and env.device_name != env.device:
        device += f" ({fmt.esc(env.device_name)})"
    return " · ".join(
        [
            f"git {_code(env.git_commit)}",
            f"torch {fmt.text(env.torch)}",
            f"device {device}",
            f"gacd {fmt.text(env.gacd_version)}",
            f"created {fmt.text(report.created_at)}",
        ]
    )


def _header(report: Report) -> str:
    student, teacher = report.student or StudentSection(), report.teacher
    dataset = report.dataset or DatasetSection()
    kind = str(report.kind or "report")
    title = f'<span class="student">{fmt.text(student.arch)}</span>'
    if teacher is not None:
        arch = fmt.text(teacher.arch)
        title += f' <span class="soft">distilled from</span> <span class="teacher">{arch}</span>'
    if report.method:
        verb = "with" if teacher is not None else "trained with"
        title += f' <span class="soft">{verb}</span> {fmt.method_name(report.method)}'
    elif kind == "evaluate":
        title += ' <span class="soft">evaluated</span>'
    facts = [fmt.text(dataset.name)]
    if fmt.num(dataset.num_classes) is not None:
        facts.append(f"{fmt.integer(dataset.num_classes)} classes")
    if fmt.num(dataset.image_size) is not None:
        size = fmt.integer(dataset.image_size)
        facts.append(f"{size}×{size} images")
    return (
        '<header class="top">'
        f'<div class="eyebrow"><span class="badge">{fmt.esc(kind)}</span> robust compression report · '
        f"{fmt.text(report.created_at)}</div>"
        f'<h1>{title}</h1><p class="sub">{" · ".join(facts)}</p></header>'
    )


def _stat(label: str, value: str, *, teacher: str = "", note: str = "") -> str:
    """A headline card: a big student figure, the teacher's beside it, a small note. HTML fragments."""
    side = f'<div class="stat-teacher"><i class="dot"></i>{teacher}</div>' if teacher else ""
    foot = f'<div class="stat-note">{note}</div>' if note else ""
    return (
        f'<div class="stat"><div class="stat-label">{label}</div>'
        f'<div class="stat-value">{value}</div>{side}{foot}</div>'
    )


def _accuracy_stat(label: str, key: str, metrics: Metrics, teacher: Metrics | None, note: str) -> str:
    side = ""
    value = metrics.accuracy(key)
    theirs = teacher.accuracy(key) if teacher is not None else None
    if fmt.num(theirs) is not None:
        side = f'teacher {fmt.pct(theirs)} <span class="delta">{fmt.pp(value, theirs)}</span>'
    return _stat(label, fmt.pct(value), teacher=side, note=note)


def _size_stat(report: Report) -> str:
    comp, student = report.compression or Compression(), report.student or StudentSection()
    s_params = comp.student_params if comp.student_params is not None else student.params
    s_macs = comp.student_macs if comp.student_macs is not None else student.macs
    if fmt.num(comp.params_ratio) is not None:
        side = f"{fmt.si(s_params)} vs {fmt.si(comp.teacher_params)} params (teacher)"
        note = f"MACs {fmt.ratio(comp.macs_ratio)} fewer" if fmt.num(comp.macs_ratio) is not None else ""
        return _stat("Fewer parameters", fmt.ratio(comp.params_ratio), teacher=side, note=note)
    if fmt.num(s_params) is not None:
        note = f"{fmt.si(s_macs)} MACs per image" if fmt.num(s_macs) is not None else ""
        return _stat("Parameters", fmt.si(s_params), note=note)
    return ""


def _speed_stat(report: Report) -> str:
    comp = report.compression or Compression()
    s_ips, t_ips = comp.student_images_per_second, comp.teacher_images_per_second
    notes = [fmt.text(comp.device)] if comp.device else []
    if fmt.num(comp.batch_size) is not None:
        notes.append(f"batch {fmt.integer(comp.batch_size)}")
    note = " · ".join(notes)
    if fmt.num(comp.speedup) is not None:
        side = f"{fmt.integer(s_ips)} vs {fmt.integer(t_ips)} img/s (teacher)"
        return _stat("Inference speedup", fmt.ratio(comp.speedup), teacher=side, note=note)
    if fmt.num(s_ips) is not None:
        return _stat("Throughput", f"{fmt.integer(s_ips)} <small>img/s</small>", note=note)
    return ""


def _headline(report: Report) -> str:
    metrics, teacher = report.metrics or Metrics(), report.teacher_metrics
    protocol = report.protocol or Protocol()
    eps = f"{fmt.norm_name(protocol.norm)} ε = {fmt.eps(protocol.eps, protocol.norm)}"
    test = f"{fmt.integer(protocol.test_size)} {fmt.split_word(protocol.split)} images"
    stats = [
        _accuracy_stat("Clean accuracy", _CLEAN.key, metrics, teacher, test),
        _accuracy_stat(f"{_REFERENCE.label} accuracy", _REFERENCE.key, metrics, teacher, eps),
    ]
    if any(fmt.num(m.accuracy(_AUTOATTACK.key)) is not None for m in (metrics, teacher) if m is not None):
        size = protocol.autoattack_size
        note = f"{eps} · {fmt.integer(size)} images" if fmt.num(size) is not None else eps
        stats.append(_accuracy_stat("AutoAttack accuracy", _AUTOATTACK.key, metrics, teacher, note))
    stats += [_size_stat(report), _speed_stat(report)]
    return (
        f'<section class="headline" aria-label="Headline numbers">{"".join(s for s in stats if s)}</section>'
        f'<p class="protocol-line">{_protocol_summary(report)}</p>'
    )


def _history(report: Report) -> list[Epoch]:
    return report.training.history if report.training is not None else []


def _epoch_number(h: Epoch, index: int) -> int:
    """The epoch a history row is about (its position when the row does not say)."""
    return h.epoch if h.epoch is not None else index + 1


def _epoch_pairs(history: Sequence[Epoch], get: Callable[[Epoch], Any]) -> list[tuple[Any, Any]]:
    return [(_epoch_number(h, i), get(h)) for i, h in enumerate(history)]


def _loss_part_names(history: Sequence[Epoch]) -> list[str]:
    names: dict[str, None] = {}
    for h in history:
        names.update(dict.fromkeys(str(k) for k in h.loss_parts))
    return list(names)


def _part_of(h: Epoch, part: str) -> float | None:
    return h.loss_part(part)


# The accuracy curves of the training history: what each plots, its name, colour and dash.
_TRAINING_ACCURACIES: tuple[tuple[Callable[[Epoch], Any], str, str, bool], ...] = (
    (lambda h: h.train_acc, "train (on training batches)", charts.NEUTRAL, True),
    (lambda h: h.val_clean_acc, "validation clean", charts.STUDENT_LIGHT, False),
    (lambda h: h.val_pgd_acc, "validation PGD", charts.STUDENT, False),
)


def _training_figures(report: Report) -> list[str]:
    history = _history(report)
    if not history:
        note = '<p class="empty">No training (evaluation only): there are no per-epoch curves.</p>'
        return [f'<figure class="card figure wide"><h3>Training curves</h3>{note}</figure>']
    loss = [charts.series("total loss", _epoch_pairs(history, lambda h: h.loss), "#111827")]
    for i, part in enumerate(_loss_part_names(history)):
        pairs = _epoch_pairs(history, partial(_part_of, part=part))
        loss.append(charts.series(part, pairs, charts.PALETTE[i % len(charts.PALETTE)], dashed=True))
    accuracy = [
        charts.series(name, _epoch_pairs(history, get), color, scale=100, dashed=dashed)
        for get, name, color, dashed in _TRAINING_ACCURACIES
    ]
    lr = [charts.series("learning rate", _epoch_pairs(history, lambda h: h.lr), charts.PALETTE[1])]
    return [
        _line_figure("Training loss", loss, y_label="loss"),
        _line_figure(
            "Accuracy during training",
            accuracy,
            y_label="accuracy (%)",
            y_range=(0, 100),
            value_fmt=fmt.percent,
        ),
        _line_figure("Learning rate", lr, y_label="lr", height=180),
    ]


def _line_figure(title: str, series: Sequence[charts.Series | None], *, y_label: str, **options: Any) -> str:
    """A per-epoch line chart in a card, with its legend."""
    present = [s for s in series if s is not None]
    chart = charts.line_chart(present, label=title, x_label="epoch", y_label=y_label, **options)
    legend = charts.legend((s.name, s.color, "dash" if s.dashed else "line") for s in present)
    return charts.figure(fmt.esc(title), chart, legend if len(present) > 1 else "")


def _attack_figure(report: Report) -> str:
    metrics, teacher = report.metrics or Metrics(), report.teacher_metrics
    theirs = teacher or Metrics()
    keys = [
        k
        for k in catalog.ACCURACY_KEYS
        if fmt.num(metrics.accuracy(k)) is not None or fmt.num(theirs.accuracy(k)) is not None
    ]
    if not keys:
        return ""
    bars = [charts.Bars("student", tuple(_scaled(metrics.accuracy(k)) for k in keys), charts.STUDENT)]
    if teacher is not None:
        bars.append(charts.Bars("teacher", tuple(_scaled(teacher.accuracy(k)) for k in keys), charts.TEACHER, slot=1))
    names = [fmt.accuracy_label(k) for k in keys]
    chart = charts.bar_chart(names, bars, label="Accuracy under attack", y_label="accuracy (%)", annotate=True)
    legend = charts.legend((b.name, b.color, "box") for b in bars)
    return charts.figure("Accuracy under attack", chart, legend, _protocol_summary(report))


def _scaled(value: Any) -> float | None:
    v = fmt.num(value)
    return None if v is None else v * 100


def _sweep(metrics: Metrics | None) -> list[tuple[float | None, float | None]]:
    return [(p.eps, p.acc) for p in (metrics.eps_sweep or [])] if metrics is not None else []


def _eps_figure(report: Report) -> str:
    protocol = report.protocol or Protocol()
    norm = protocol.norm
    series = [
        charts.series(name, _sweep(m), color, scale=100)
        for name, m, color in (
            ("student", report.metrics, charts.STUDENT),
            ("teacher", report.teacher_metrics, charts.TEACHER),
        )
    ]
    present = [s for s in series if s is not None]
    eps = fmt.num(protocol.eps)
    marker = None if eps is None else (eps, f"ε = {fmt.eps(eps, norm)}")
    unit = "ε (in 1/255)" if fmt.is_linf(norm) else "ε"
    chart = charts.line_chart(
        present,
        label="Accuracy versus attack radius",
        x_label=unit,
        y_label="accuracy (%)",
        x_fmt=lambda v: fmt.eps(v, norm),
        value_fmt=fmt.percent,
        y_range=(0, 100),
        marker=marker,
    )
    legend = charts.legend((s.name, s.color, "line") for s in present)
    caption = f"Robust accuracy as the {fmt.norm_name(norm)} radius grows; the dotted line marks the evaluation ε."
    return charts.figure("Accuracy versus ε", chart, legend, caption)


def _per_class_figure(report: Report) -> str:
    names = [str(c) for c in (report.dataset.class_names if report.dataset is not None else [])]
    ref = _REFERENCE.name
    models = [
        (who, m, dark, light)
        for who, m, dark, light in (
            ("student", report.metrics, charts.STUDENT, charts.STUDENT_LIGHT),
            ("teacher", report.teacher_metrics, charts.TEACHER, charts.TEACHER_LIGHT),
        )
        if m is not None and (m.class_accuracies(ref) or m.class_accuracies("clean"))
    ]
    if not models:
        return ""
    n = max(len(m.class_accuracies(k)) for _, m, _, _ in models for k in ("clean", ref))
    categories = [names[i] if i < len(names) else f"class {i}" for i in range(n)]
    bars = []
    for slot, (who, m, dark, light) in enumerate(models):
        for key, label, color, narrow in (("clean", "clean", light, False), (ref, _REFERENCE.label, dark, True)):
            values = m.class_accuracies(key)
            if values:
                padded = tuple(_scaled(values[i]) if i < len(values) else None for i in range(n))
                bars.append(charts.Bars(f"{who} {label}", padded, color, slot=slot, narrow=narrow))
    chart = charts.bar_chart(categories, bars, label="Per-class accuracy", y_label="accuracy (%)", min_width=1000)
    legend = charts.legend((b.name, b.color, "box") for b in bars)
    caption = f"Narrow dark bars: {_REFERENCE.label} (robust) accuracy; wide pale bars behind them: clean accuracy."
    return charts.figure("Per-class accuracy", chart, legend, caption, wide=True)


def _charts(report: Report) -> str:
    figures = [
        *_training_figures(report),
        _attack_figure(report),
        _eps_figure(report),
        _per_class_figure(report),
    ]
    return '<h2>Charts</h2><div class="grid">' + "".join(f for f in figures if f) + "</div>"


def _metrics_table(report: Report) -> str:
    metrics, teacher = report.metrics or Metrics(), report.teacher_metrics
    theirs = teacher or Metrics()
    measured = report.metrics is not None or teacher is not None
    rows = [
        (fmt.esc(fmt.accuracy_label(k)) + " accuracy", metrics.accuracy(k), theirs.accuracy(k))
        for k in (catalog.ACCURACY_KEYS if measured else ())
    ]
    for step in dict.fromkeys([*(metrics.autoattack_breakdown or {}), *(theirs.autoattack_breakdown or {})]):
        what = "AutoAttack subset, clean" if step == "clean" else f"AutoAttack after {fmt.esc(step)}"
        rows.append((f'<span class="indent">{what}</span>', metrics.after_stage(step), theirs.after_stage(step)))
    cells: list[tuple[str, ...]]
    if teacher is None:
        cells = [(label, fmt.pct(s)) for label, s, _ in rows]
        cells.append(("Evaluation time", fmt.duration(metrics.seconds)))
        return _card("Metrics", _table(["", "Student"], cells, cls="num"))
    cells = [(label, fmt.pct(s), fmt.pct(t), fmt.pp(s, t)) for label, s, t in rows]
    cells.append(("Evaluation time", fmt.duration(metrics.seconds), fmt.duration(teacher.seconds), ""))
    return _card("Metrics", _table(["", "Student", "Teacher", "Δ"], cells, cls="num"))


def _attack_params(params: AttackParams | AutoAttackParams, norm: Any) -> str:
    items = []
    for key, value in params.given():
        shown = fmt.eps(value, norm) if key in {"eps", "step_size"} and fmt.num(value) is not None else fmt.text(value)
        items.append(f"{fmt.esc(key)} = {shown}")
    return "; ".join(items) or fmt.DASH


def _protocol_table(report: Report) -> str:
    protocol = report.protocol or Protocol()
    norm, eps = protocol.norm, protocol.eps
    rows = [
        ("Threat model", f"{fmt.norm_name(norm)}, ε = {fmt.eps(eps, norm)} ({fmt.text(eps)})"),
        ("Attacks", ", ".join(fmt.attack_name(a) for a in protocol.attacks) or fmt.DASH),
    ]
    for name, params in protocol.attack_params.items():
        label = f'<span class="indent">{fmt.attack_name(name)}</span>'
        rows.append((label, _attack_params(params, norm) if params is not None else fmt.DASH))
    rows += [
        (f"{fmt.split_word(protocol.split).capitalize()} images", fmt.integer(protocol.test_size)),
        ("AutoAttack images", fmt.integer(protocol.autoattack_size)),
        ("Precision", fmt.text(protocol.precision)),
        ("Seed", fmt.text(protocol.seed)),
    ]
    return _card("Protocol", _table(None, rows))


_STRUCTURE_LABELS = {
    "cka_clean": ("Feature CKA (clean)", 3),
    "cka_adv": ("Feature CKA (adversarial)", 3),
    "logit_corr_diff": ("Logit correlation gap (clean)", 4),
    "logit_corr_diff_adv": ("Logit correlation gap (adversarial)", 4),
    "adv_images": ("Images of the adversarial figures", 0),
}


def _structure_table(report: Report) -> str:
    structure, agreement = report.structure, report.agreement
    if structure is None and agreement is None:
        return ""
    rows = [
        (f"Prediction agreement ({fmt.esc(key)})", fmt.pct(value))
        for key, value in (agreement.given() if agreement is not None else [])
    ]
    for key, value in structure.given() if structure is not None else []:
        label, digits = _STRUCTURE_LABELS.get(key, (fmt.esc(key), 4))
        rows.append((label, fmt.fixed(value, digits) if fmt.num(value) is not None else fmt.text(value)))
    return _card("Structure (student vs teacher)", _table(None, rows, cls="num"))


def _compression_table(report: Report) -> str:
    comp = report.compression
    if comp is None:
        return ""
    rows = [
        (label, show(teacher), show(student), fmt.ratio(ratio))
        for label, teacher, student, ratio, show in (
            ("Parameters", comp.teacher_params, comp.student_params, comp.params_ratio, fmt.integer),
            ("MACs / image", comp.teacher_macs, comp.student_macs, comp.macs_ratio, fmt.si),
            (
                "Images / s",
                comp.teacher_images_per_second,
                comp.student_images_per_second,
                comp.speedup,
                fmt.integer,
            ),
        )
    ]
    table = _table(["", "Teacher", "Student", "Ratio"], rows, cls="num")
    timing = f"Throughput timed on {fmt.text(comp.device)}, batch size {fmt.integer(comp.batch_size)}."
    return _card("Compression", f'{table}<p class="note">{timing}</p>')


def _models_table(report: Report) -> str:
    student, teacher = report.student or StudentSection(), report.teacher
    t = teacher or TeacherSection()
    fields: tuple[tuple[str, Any, Any, Callable[[Any], str]], ...] = (
        ("Architecture", student.arch, t.arch, fmt.text),
        ("Parameters", student.params, t.params, fmt.integer),
        ("MACs / image", student.macs, t.macs, fmt.si),
        ("Classes", student.num_classes, t.num_classes, fmt.integer),
        ("File", student.file, None, _code),
        ("SHA-256", student.sha256, None, _code),
        ("Input normalisation", student.normalization, t.normalization, _normalization),
        ("Source", student.source, t.source, fmt.text),  # a library model or a RobustBench entry
        ("Input size", _side(student), _side(t), fmt.text),
        ("Weights licence", _licence(student), _licence(t), fmt.text),
    )
    headers = ["", "Student", "Teacher"] if teacher is not None else ["", "Student"]
    rows = [
        [label, show(mine), *([show(theirs)] if teacher is not None else [])]
        for label, mine, theirs, show in fields
        if mine is not None or theirs is not None
    ]
    return _card("Models", _table(headers, rows, cls="wrap"))


def _side(model: StudentSection | TeacherSection) -> str | None:
    """``224 px (32 px images resized inside the model)``, or None for a model that takes any side."""
    if model.input_size is None:
        return None
    resized = f" ({model.resized_from} px images resized inside the model)" if model.resized_from else ""
    return f"{model.input_size} px{resized}"


def _licence(model: StudentSection | TeacherSection) -> str | None:
    if model.licence is None:
        return None
    return model.licence + (" (non-commercial use only)" if model.non_commercial else "")


_NORM_SOURCES = {
    "entry": "the RobustBench entry's record",
    "file": "from the weights file",
    "user": "given by the user",
    "default": "default: none given, so none applied",
    "dataset": "the training dataset's statistics",
}


def _normalization(norm: Normalization | None) -> str:
    """``none (mean 0, std 1), default: none given ...``: which normalisation and where it came from."""
    if norm is None:
        return fmt.DASH
    name = str(norm.name if norm.name is not None else "custom")
    values = "mean 0, std 1" if name == "none" else f"mean {fmt.text(norm.mean)}; std {fmt.text(norm.std)}"
    source = _NORM_SOURCES.get(str(norm.source), fmt.text(norm.source))
    origin = f", where it was {_NORM_SOURCES.get(norm.origin, fmt.text(norm.origin))}" if norm.origin else ""
    return f'<strong>{fmt.esc(name)}</strong> ({values})<br><span class="soft">{source}{origin}</span>'


def _teacher_check_table(report: Report) -> str:
    check = report.teacher.check if report.teacher is not None else None
    if check is None:
        return ""
    if check.verdict == "exempt":
        return _card("Teacher check", f'<p class="note">Exempt: {fmt.text(check.exempt_reason)}.</p>')
    pgd = (
        f"{fmt.pct(check.pgd20_acc)} on {fmt.integer(check.pgd20_subset)} images"
        if check.pgd20_acc is not None
        else fmt.text(check.pgd20_skipped)
    )
    verdict = fmt.text(check.verdict)
    if check.allowed_weak:
        verdict += " (allowed by allow_weak)"
    rows = [
        ("Clean accuracy", f"{fmt.pct(check.clean_acc)} on {fmt.integer(check.clean_subset)} images"),
        ("PGD-20 accuracy", pgd),
        ("Chance / refused below", f"{fmt.pct(check.chance)} / {fmt.pct(check.threshold)}"),
        ("Verdict", verdict),
        ("Normalisation", _normalization(check.normalization)),
    ]
    for a in check.alternatives:
        rows.append((f"With {fmt.esc(str(a.label))} ({fmt.esc(str(a.name))})", fmt.pct(a.clean_acc)))
    note = f'<p class="note">{fmt.text(check.subset)}.</p>'
    if check.message:
        note += f'<p class="note"><strong>Warning:</strong> {fmt.text(check.message)}</p>'
    return _card("Teacher check (before anything ran)", _table(None, rows, cls="wrap") + note)


def _dataset_table(report: Report) -> str:
    dataset = report.dataset or DatasetSection()
    names = dataset.class_names
    shown = fmt.text(names)
    if len(names) > 20:
        shown = f"<details><summary>{len(names)} names</summary>{shown}</details>"
    sizes = (dataset.train_size, dataset.val_size, dataset.test_size)
    rows = [
        ("Name", fmt.text(dataset.name)),
        ("Classes", fmt.integer(dataset.num_classes)),
        ("Train / val / test", " / ".join(fmt.integer(n) for n in sizes)),
        ("Image size", fmt.integer(dataset.image_size)),
        ("Class subset", fmt.text(dataset.classes)),
        ("Class names", shown),
    ]
    return _card("Dataset", _table(None, rows, cls="wrap"))


def _epoch_row(h: Epoch, index: int, parts: Sequence[str]) -> list[str]:
    return [
        fmt.text(_epoch_number(h, index)),
        fmt.text(h.lr),
        fmt.fixed(h.loss, 4),
        *(fmt.fixed(h.loss_part(p), 4) for p in parts),
        fmt.pct(h.train_acc),
        fmt.pct(h.val_clean_acc),
        fmt.pct(h.val_pgd_acc),
        fmt.duration(h.seconds),
        fmt.integer(h.images_per_second),
    ]


def _training_table(report: Report) -> str:
    training = report.training
    if training is None:
        return _card("Training", '<p class="empty">No training (evaluation only).</p>')
    rows = [
        ("Epochs", fmt.integer(training.epochs)),
        ("Wall time", fmt.duration(training.seconds)),
        ("Images / s", fmt.integer(training.images_per_second)),
        ("Resumed from epoch", fmt.integer(training.resumed_from_epoch)),
    ]
    parts = _loss_part_names(training.history)
    headers = ["Epoch", "lr", "Loss", *map(fmt.esc, parts), "Train", "Val clean", "Val PGD", "Time", "Img/s"]
    epochs = [_epoch_row(h, i, parts) for i, h in enumerate(training.history)]
    per_epoch = ""
    if epochs:
        per_epoch = (
            f"<details><summary>Per-epoch history ({len(epochs)} epochs)</summary>"
            f'<div class="scroll">{_table(headers, epochs, cls="num")}</div></details>'
        )
    return _card("Training", _table(None, rows, cls="num") + per_epoch)


_ENVIRONMENT_LABELS = {
    "torch": "PyTorch",
    "python": "Python",
    "platform": "Platform",
    "device": "Device",
    "device_name": "Device name",
    "git_commit": "Git commit",
    "gacd_version": "gacd version",
    "world_size": "Processes (torch.distributed)",
    "sync_batchnorm": "SyncBatchNorm",
}


def _environment_table(report: Report) -> str:
    env = report.environment or Environment()
    rows = [
        (_ENVIRONMENT_LABELS.get(k, fmt.esc(k)), _code(v) if k == "git_commit" else fmt.text(v)) for k, v in env.given()
    ]
    rows.append(("Report schema", fmt.text(report.schema_)))
    return _card("Environment", _table(None, rows, cls="wrap"))


def _export_table(report: Report) -> str:
    """The ONNX export and its check against PyTorch (jobs only; evaluation reports have none)."""
    onnx = report.export.onnx if report.export is not None else None
    if onnx is None:
        return ""
    diff, agreement = fmt.num(onnx.max_abs_diff), fmt.num(onnx.agreement)
    rows = [
        ("File", _code(onnx.file)),
        ("Opset", fmt.text(onnx.opset)),
        ("Input", fmt.text(onnx.input)),
        ("Normalisation", fmt.text(onnx.normalization)),
        ("Max |logit difference|", fmt.DASH if diff is None else f"{diff:.2e}"),
        (
            "Identical predictions",
            (fmt.DASH if agreement is None else f"{100 * agreement:.2f}%")
            + f" of {fmt.integer(onnx.images)} test images",
        ),
        ("Checked with", f"ONNX Runtime {fmt.text(onnx.onnxruntime)} ({fmt.text(onnx.provider)})"),
    ]
    return _card("ONNX export", _table(None, rows, cls="wrap"))


def _spec_block(report: Report) -> str:
    if report.spec is None:
        return ""
    text = json.dumps(report.spec, indent=2, ensure_ascii=False, default=str)
    return _card(
        "Job specification",
        f"<details><summary>Show the spec as JSON</summary><pre>{fmt.esc(text)}</pre></details>",
        wide=True,
    )


def _tables(report: Report) -> str:
    cards = [
        _metrics_table(report),
        _protocol_table(report),
        _structure_table(report),
        _compression_table(report),
        _models_table(report),
        _teacher_check_table(report),
        _dataset_table(report),
        _training_table(report),
        _environment_table(report),
        _export_table(report),
        _spec_block(report),
    ]
    return '<h2>Details</h2><div class="grid tables">' + "".join(c for c in cards if c) + "</div>"


def _footer(report: Report) -> str:
    return (
        '<footer class="footer">'
        f"<p><strong>Protocol:</strong> {_protocol_summary(report)}.</p>"
        f"<p><strong>Provenance:</strong> {_provenance(report)}.</p></footer>"
    )


def _page_title(report: Report) -> str:
    student = (report.student.arch if report.student is not None else None) or "model"
    dataset = report.dataset.name if report.dataset is not None else None
    extras = [str(v) for v in (report.method, dataset) if v]
    return f"gacd report — {student}" + (f" ({', '.join(extras)})" if extras else "")


def render_html(report: Report | Mapping[str, Any]) -> str:
    """Render a report as one self-contained HTML page.

    The page opens with a strip of headline numbers (student clean, PGD-20 and AutoAttack accuracy
    with the teacher's beside them, compression and speedup), then inline-SVG charts (training
    curves, accuracy under each attack, accuracy versus ε, per-class accuracy), then compact tables
    with everything else and a footer stating the protocol and the provenance. It uses no
    JavaScript and loads nothing from the network.

    Args:
        report: The typed report, or the content of a ``report.json`` of any layout (loaded through
            :meth:`Report.from_dict`, so an undeclared key is refused). Any value may be ``null``; it
            is then shown as an em dash, or its chart is left out.

    Returns:
        The HTML document as a string. Every string taken from the report is HTML-escaped.
    """
    typed = report if isinstance(report, Report) else Report.from_dict(dict(report))
    body = "".join([_header(typed), _headline(typed), _charts(typed), _tables(typed)])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{fmt.esc(_page_title(typed))}</title><style>\n{CSS}</style></head>"
        f"<body><main>{body}</main>{_footer(typed)}</body></html>\n"
    )
