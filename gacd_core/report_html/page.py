"""The HTML report page: its sections (header, headline numbers, charts, tables, footer) from a report
dictionary, put together with its stylesheet (``report.css``, installed with the package)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from importlib.resources import files
from typing import Any

from gacd_core import catalog
from gacd_core.report_html import charts, fmt

_REFERENCE = catalog.REFERENCE_ATTACK  # the headline robust accuracy and the per-class chart's attack
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


def _protocol_summary(report: Mapping[str, Any]) -> str:
    """One line saying what produced the numbers: threat model, attacks and image counts."""
    protocol = fmt.as_dict(report.get("protocol"))
    norm = protocol.get("norm")
    parts = [f"{fmt.norm_name(norm)} ε = {fmt.eps(protocol.get('eps'), norm)}"]
    attacks = [fmt.attack_name(a) for a in fmt.as_list(protocol.get("attacks"))]
    autoattack = fmt.as_dict(fmt.as_dict(protocol.get("attack_params")).get("autoattack"))
    if autoattack:
        version = f" ({fmt.esc(autoattack['version'])})" if autoattack.get("version") else ""
        size = protocol.get("autoattack_size")
        size = f" on {fmt.integer(size)} images" if fmt.num(size) is not None else ""
        attacks.append(f"AutoAttack{version}{size}")
    if attacks:
        parts.append("attacks " + ", ".join(attacks))
    if fmt.num(protocol.get("test_size")) is not None:
        parts.append(f"{fmt.integer(protocol['test_size'])} {fmt.split_word(protocol)} images")
    if protocol.get("precision"):
        parts.append(fmt.esc(protocol["precision"]))
    if protocol.get("seed") is not None:
        parts.append(f"seed {fmt.text(protocol['seed'])}")
    return " · ".join(parts)


def _provenance(report: Mapping[str, Any]) -> str:
    env = fmt.as_dict(report.get("environment"))
    device = fmt.text(env.get("device"))
    if env.get("device_name") and env.get("device_name") != env.get("device"):
        device += f" ({fmt.esc(env['device_name'])})"
    return " · ".join(
        [
            f"git {_code(env.get('git_commit'))}",
            f"torch {fmt.text(env.get('torch'))}",
            f"device {device}",
            f"gacd {fmt.text(env.get('gacd_version'))}",
            f"created {fmt.text(report.get('created_at'))}",
        ]
    )


def _header(report: Mapping[str, Any]) -> str:
    student, teacher = fmt.as_dict(report.get("student")), fmt.as_dict(report.get("teacher"))
    dataset = fmt.as_dict(report.get("dataset"))
    kind = str(report.get("kind") or "report")
    title = f'<span class="student">{fmt.text(student.get("arch"))}</span>'
    if teacher:
        arch = fmt.text(teacher.get("arch"))
        title += f' <span class="soft">distilled from</span> <span class="teacher">{arch}</span>'
    if report.get("method"):
        verb = "with" if teacher else "trained with"
        title += f' <span class="soft">{verb}</span> {fmt.method_name(report["method"])}'
    elif kind == "evaluate":
        title += ' <span class="soft">evaluated</span>'
    facts = [fmt.text(dataset.get("name"))]
    if fmt.num(dataset.get("num_classes")) is not None:
        facts.append(f"{fmt.integer(dataset['num_classes'])} classes")
    if fmt.num(dataset.get("image_size")) is not None:
        size = fmt.integer(dataset["image_size"])
        facts.append(f"{size}×{size} images")
    return (
        '<header class="top">'
        f'<div class="eyebrow"><span class="badge">{fmt.esc(kind)}</span> robust compression report · '
        f"{fmt.text(report.get('created_at'))}</div>"
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


def _accuracy_stat(
    label: str, key: str, metrics: Mapping[str, Any], teacher: Mapping[str, Any] | None, note: str
) -> str:
    side = ""
    if teacher is not None and fmt.num(teacher.get(key)) is not None:
        delta = fmt.pp(metrics.get(key), teacher[key])
        side = f'teacher {fmt.pct(teacher[key])} <span class="delta">{delta}</span>'
    return _stat(label, fmt.pct(metrics.get(key)), teacher=side, note=note)


def _size_stat(report: Mapping[str, Any]) -> str:
    comp, student = fmt.as_dict(report.get("compression")), fmt.as_dict(report.get("student"))
    s_params = comp.get("student_params", student.get("params"))
    s_macs = comp.get("student_macs", student.get("macs"))
    if fmt.num(comp.get("params_ratio")) is not None:
        side = f"{fmt.si(s_params)} vs {fmt.si(comp.get('teacher_params'))} params (teacher)"
        note = f"MACs {fmt.ratio(comp['macs_ratio'])} fewer" if fmt.num(comp.get("macs_ratio")) is not None else ""
        return _stat("Fewer parameters", fmt.ratio(comp["params_ratio"]), teacher=side, note=note)
    if fmt.num(s_params) is not None:
        note = f"{fmt.si(s_macs)} MACs per image" if fmt.num(s_macs) is not None else ""
        return _stat("Parameters", fmt.si(s_params), note=note)
    return ""


def _speed_stat(report: Mapping[str, Any]) -> str:
    comp = fmt.as_dict(report.get("compression"))
    s_ips, t_ips = comp.get("student_images_per_second"), comp.get("teacher_images_per_second")
    notes = [fmt.text(comp["device"])] if comp.get("device") else []
    if fmt.num(comp.get("batch_size")) is not None:
        notes.append(f"batch {fmt.integer(comp['batch_size'])}")
    note = " · ".join(notes)
    if fmt.num(comp.get("speedup")) is not None:
        side = f"{fmt.integer(s_ips)} vs {fmt.integer(t_ips)} img/s (teacher)"
        return _stat("Inference speedup", fmt.ratio(comp["speedup"]), teacher=side, note=note)
    if fmt.num(s_ips) is not None:
        return _stat("Throughput", f"{fmt.integer(s_ips)} <small>img/s</small>", note=note)
    return ""


def _headline(report: Mapping[str, Any]) -> str:
    metrics = fmt.as_dict(report.get("metrics"))
    teacher = fmt.as_dict(report.get("teacher_metrics")) if report.get("teacher_metrics") else None
    protocol = fmt.as_dict(report.get("protocol"))
    eps = f"{fmt.norm_name(protocol.get('norm'))} ε = {fmt.eps(protocol.get('eps'), protocol.get('norm'))}"
    test = f"{fmt.integer(protocol.get('test_size'))} {fmt.split_word(protocol)} images"
    stats = [
        _accuracy_stat("Clean accuracy", "clean_acc", metrics, teacher, test),
        _accuracy_stat(f"{_REFERENCE.label} accuracy", _REFERENCE.key, metrics, teacher, eps),
    ]
    if any(fmt.num(m.get("autoattack_acc")) is not None for m in (metrics, fmt.as_dict(teacher))):
        size = protocol.get("autoattack_size")
        note = f"{eps} · {fmt.integer(size)} images" if fmt.num(size) is not None else eps
        stats.append(_accuracy_stat("AutoAttack accuracy", "autoattack_acc", metrics, teacher, note))
    stats += [_size_stat(report), _speed_stat(report)]
    return (
        f'<section class="headline" aria-label="Headline numbers">{"".join(s for s in stats if s)}</section>'
        f'<p class="protocol-line">{_protocol_summary(report)}</p>'
    )


def _history(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        fmt.as_dict(h)
        for h in fmt.as_list(fmt.as_dict(report.get("training")).get("history"))
        if isinstance(h, Mapping)
    ]


def _epoch_pairs(
    history: Sequence[Mapping[str, Any]], get: Callable[[Mapping[str, Any]], Any]
) -> list[tuple[Any, Any]]:
    return [(h.get("epoch", i + 1), get(h)) for i, h in enumerate(history)]


def _loss_part_names(history: Sequence[Mapping[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for h in history:
        names.update(dict.fromkeys(str(k) for k in fmt.as_dict(h.get("loss_parts"))))
    return list(names)


def _part_of(h: Mapping[str, Any], part: str) -> Any:
    return fmt.as_dict(h.get("loss_parts")).get(part)


def _field_of(h: Mapping[str, Any], key: str) -> Any:
    return h.get(key)


def _training_figures(report: Mapping[str, Any]) -> list[str]:
    history = _history(report)
    if not history:
        note = '<p class="empty">No training (evaluation only): there are no per-epoch curves.</p>'
        return [f'<figure class="card figure wide"><h3>Training curves</h3>{note}</figure>']
    loss = [charts.series("total loss", _epoch_pairs(history, lambda h: h.get("loss")), "#111827")]
    for i, part in enumerate(_loss_part_names(history)):
        pairs = _epoch_pairs(history, partial(_part_of, part=part))
        loss.append(charts.series(part, pairs, charts.PALETTE[i % len(charts.PALETTE)], dashed=True))
    accuracy = [
        charts.series(name, _epoch_pairs(history, partial(_field_of, key=key)), color, scale=100, dashed=dashed)
        for key, name, color, dashed in (
            ("train_acc", "train (on training batches)", charts.NEUTRAL, True),
            ("val_clean_acc", "validation clean", charts.STUDENT_LIGHT, False),
            ("val_pgd_acc", "validation PGD", charts.STUDENT, False),
        )
    ]
    lr = [charts.series("learning rate", _epoch_pairs(history, lambda h: h.get("lr")), charts.PALETTE[1])]
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


def _attack_figure(report: Mapping[str, Any]) -> str:
    metrics, teacher = fmt.as_dict(report.get("metrics")), fmt.as_dict(report.get("teacher_metrics"))
    keys = [
        k for k in catalog.ACCURACY_KEYS if fmt.num(metrics.get(k)) is not None or fmt.num(teacher.get(k)) is not None
    ]
    if not keys:
        return ""
    bars = [charts.Bars("student", tuple(_scaled(metrics.get(k)) for k in keys), charts.STUDENT)]
    if teacher:
        bars.append(charts.Bars("teacher", tuple(_scaled(teacher.get(k)) for k in keys), charts.TEACHER, slot=1))
    names = [fmt.ATTACK_LABELS.get(k.removesuffix("_acc"), k) for k in keys]
    chart = charts.bar_chart(names, bars, label="Accuracy under attack", y_label="accuracy (%)", annotate=True)
    legend = charts.legend((b.name, b.color, "box") for b in bars)
    return charts.figure("Accuracy under attack", chart, legend, _protocol_summary(report))


def _scaled(value: Any) -> float | None:
    v = fmt.num(value)
    return None if v is None else v * 100


def _eps_figure(report: Mapping[str, Any]) -> str:
    protocol = fmt.as_dict(report.get("protocol"))
    norm = protocol.get("norm")
    series = [
        charts.series(
            name,
            ((p.get("eps"), p.get("acc")) for p in map(fmt.as_dict, fmt.as_list(m.get("eps_sweep")))),
            color,
            scale=100,
        )
        for name, m, color in (
            ("student", fmt.as_dict(report.get("metrics")), charts.STUDENT),
            ("teacher", fmt.as_dict(report.get("teacher_metrics")), charts.TEACHER),
        )
    ]
    present = [s for s in series if s is not None]
    eps = fmt.num(protocol.get("eps"))
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


def _per_class_figure(report: Mapping[str, Any]) -> str:
    names = [str(c) for c in fmt.as_list(fmt.as_dict(report.get("dataset")).get("class_names"))]
    models = [
        (
            "student",
            fmt.as_dict(fmt.as_dict(report.get("metrics")).get("per_class")),
            charts.STUDENT,
            charts.STUDENT_LIGHT,
        ),
        (
            "teacher",
            fmt.as_dict(fmt.as_dict(report.get("teacher_metrics")).get("per_class")),
            charts.TEACHER,
            charts.TEACHER_LIGHT,
        ),
    ]
    ref = _REFERENCE.name
    models = [m for m in models if fmt.as_list(m[1].get(ref)) or fmt.as_list(m[1].get("clean"))]
    if not models:
        return ""
    n = max(len(fmt.as_list(pc.get(k))) for _, pc, _, _ in models for k in ("clean", ref))
    categories = [names[i] if i < len(names) else f"class {i}" for i in range(n)]
    bars = []
    for slot, (who, per_class, dark, light) in enumerate(models):
        for key, label, color, narrow in (("clean", "clean", light, False), (ref, _REFERENCE.label, dark, True)):
            values = fmt.as_list(per_class.get(key))
            if values:
                padded = tuple(_scaled(values[i]) if i < len(values) else None for i in range(n))
                bars.append(charts.Bars(f"{who} {label}", padded, color, slot=slot, narrow=narrow))
    chart = charts.bar_chart(categories, bars, label="Per-class accuracy", y_label="accuracy (%)", min_width=1000)
    legend = charts.legend((b.name, b.color, "box") for b in bars)
    caption = f"Narrow dark bars: {_REFERENCE.label} (robust) accuracy; wide pale bars behind them: clean accuracy."
    return charts.figure("Per-class accuracy", chart, legend, caption, wide=True)


def _charts(report: Mapping[str, Any]) -> str:
    figures = [
        *_training_figures(report),
        _attack_figure(report),
        _eps_figure(report),
        _per_class_figure(report),
    ]
    return '<h2>Charts</h2><div class="grid">' + "".join(f for f in figures if f) + "</div>"


def _metric_label(key: str) -> str:
    name = key.removesuffix("_acc")
    return fmt.ATTACK_LABELS.get(name, fmt.esc(name)) + " accuracy"


def _metrics_table(report: Mapping[str, Any]) -> str:
    metrics = fmt.as_dict(report.get("metrics"))
    teacher = fmt.as_dict(report.get("teacher_metrics")) if report.get("teacher_metrics") else None
    keys = [k for k in catalog.ACCURACY_KEYS if k in metrics or (teacher and k in teacher)]
    keys += [k for k in metrics if k.endswith("_acc") and k not in keys]
    rows = [(_metric_label(k), metrics.get(k), fmt.as_dict(teacher).get(k)) for k in keys]
    breakdown = fmt.as_dict(metrics.get("autoattack_breakdown"))
    t_breakdown = fmt.as_dict(fmt.as_dict(teacher).get("autoattack_breakdown"))
    for step in dict.fromkeys([*breakdown, *t_breakdown]):
        what = "AutoAttack subset, clean" if step == "clean" else f"AutoAttack after {fmt.esc(step)}"
        label = f'<span class="indent">{what}</span>'
        rows.append((label, breakdown.get(step), t_breakdown.get(step)))
    cells: list[tuple[str, ...]]
    if teacher is None:
        cells = [(label, fmt.pct(s)) for label, s, _ in rows]
        cells.append(("Evaluation time", fmt.duration(metrics.get("seconds"))))
        return _card("Metrics", _table(["", "Student"], cells, cls="num"))
    cells = [(label, fmt.pct(s), fmt.pct(t), fmt.pp(s, t)) for label, s, t in rows]
    seconds = (fmt.duration(metrics.get("seconds")), fmt.duration(teacher.get("seconds")))
    cells.append(("Evaluation time", *seconds, ""))
    return _card("Metrics", _table(["", "Student", "Teacher", "Δ"], cells, cls="num"))


def _attack_params(params: Mapping[str, Any], norm: Any) -> str:
    items = []
    for key, value in params.items():
        shown = fmt.eps(value, norm) if key in {"eps", "step_size"} and fmt.num(value) is not None else fmt.text(value)
        items.append(f"{fmt.esc(key)} = {shown}")
    return "; ".join(items) or fmt.DASH


def _protocol_table(report: Mapping[str, Any]) -> str:
    protocol = fmt.as_dict(report.get("protocol"))
    norm = protocol.get("norm")
    eps = protocol.get("eps")
    rows = [
        ("Threat model", f"{fmt.norm_name(norm)}, ε = {fmt.eps(eps, norm)} ({fmt.text(eps)})"),
        ("Attacks", ", ".join(fmt.attack_name(a) for a in fmt.as_list(protocol.get("attacks"))) or fmt.DASH),
    ]
    for name, params in fmt.as_dict(protocol.get("attack_params")).items():
        label = f'<span class="indent">{fmt.attack_name(name)}</span>'
        rows.append((label, _attack_params(fmt.as_dict(params), norm)))
    rows += [
        (f"{fmt.split_word(protocol).capitalize()} images", fmt.integer(protocol.get("test_size"))),
        ("AutoAttack images", fmt.integer(protocol.get("autoattack_size"))),
        ("Precision", fmt.text(protocol.get("precision"))),
        ("Seed", fmt.text(protocol.get("seed"))),
    ]
    return _card("Protocol", _table(None, rows))


_STRUCTURE_LABELS = {
    "cka_clean": ("Feature CKA (clean)", 3),
    "cka_adv": ("Feature CKA (adversarial)", 3),
    "logit_corr_diff": ("Logit correlation gap (clean)", 4),
    "logit_corr_diff_adv": ("Logit correlation gap (adversarial)", 4),
}


def _structure_table(report: Mapping[str, Any]) -> str:
    structure, agreement = fmt.as_dict(report.get("structure")), fmt.as_dict(report.get("agreement"))
    if not structure and not agreement:
        return ""
    rows = [(f"Prediction agreement ({fmt.esc(key)})", fmt.pct(value)) for key, value in agreement.items()]
    for key, value in structure.items():
        label, digits = _STRUCTURE_LABELS.get(key, (fmt.esc(key), 4))
        rows.append((label, fmt.fixed(value, digits) if fmt.num(value) is not None else fmt.text(value)))
    return _card("Structure (student vs teacher)", _table(None, rows, cls="num"))


def _compression_table(report: Mapping[str, Any]) -> str:
    comp = fmt.as_dict(report.get("compression"))
    if not comp:
        return ""
    rows = [
        (label, show(comp.get(f"teacher_{key}")), show(comp.get(f"student_{key}")), fmt.ratio(comp.get(ratio)))
        for label, key, show, ratio in (
            ("Parameters", "params", fmt.integer, "params_ratio"),
            ("MACs / image", "macs", fmt.si, "macs_ratio"),
            ("Images / s", "images_per_second", fmt.integer, "speedup"),
        )
    ]
    table = _table(["", "Teacher", "Student", "Ratio"], rows, cls="num")
    timing = f"Throughput timed on {fmt.text(comp.get('device'))}, batch size {fmt.integer(comp.get('batch_size'))}."
    return _card("Compression", f'{table}<p class="note">{timing}</p>')


def _models_table(report: Mapping[str, Any]) -> str:
    student, teacher = fmt.as_dict(report.get("student")), fmt.as_dict(report.get("teacher"))
    fields = (
        ("Architecture", "arch", fmt.text),
        ("Parameters", "params", fmt.integer),
        ("MACs / image", "macs", fmt.si),
        ("Classes", "num_classes", fmt.integer),
        ("File", "file", _code),
        ("SHA-256", "sha256", _code),
    )
    headers = ["", "Student", "Teacher"] if teacher else ["", "Student"]
    rows = []
    for label, key, show in fields:
        if key in student or key in teacher:
            rows.append([label, show(student.get(key)), *([show(teacher.get(key))] if teacher else [])])
    if "normalization" in student or "normalization" in teacher:
        rows.append(
            [
                "Input normalisation",
                _normalization(student.get("normalization")),
                *([_normalization(teacher.get("normalization"))] if teacher else []),
            ]
        )
    return _card("Models", _table(headers, rows, cls="wrap"))


_NORM_SOURCES = {
    "file": "from the weights file",
    "user": "given by the user",
    "default": "default: none given, so none applied",
    "dataset": "the training dataset's statistics",
}


def _normalization(value: Any) -> str:
    """``none (mean 0, std 1), default: none given ...``: which normalisation and where it came from."""
    norm = fmt.as_dict(value)
    if not norm:
        return fmt.DASH
    name = str(norm.get("name", "custom"))
    values = (
        "mean 0, std 1" if name == "none" else f"mean {fmt.text(norm.get('mean'))}; std {fmt.text(norm.get('std'))}"
    )
    source = _NORM_SOURCES.get(str(norm.get("source")), fmt.text(norm.get("source")))
    origin = norm.get("origin")
    origin = f", where it was {_NORM_SOURCES.get(str(origin), fmt.text(origin))}" if origin else ""
    return f'<strong>{fmt.esc(name)}</strong> ({values})<br><span class="soft">{source}{origin}</span>'


def _teacher_check_table(report: Mapping[str, Any]) -> str:
    check = fmt.as_dict(fmt.as_dict(report.get("teacher")).get("check"))
    if not check:
        return ""
    if check.get("verdict") == "exempt":
        return _card("Teacher check", f'<p class="note">Exempt: {fmt.text(check.get("exempt_reason"))}.</p>')
    pgd = (
        f"{fmt.pct(check.get('pgd20_acc'))} on {fmt.integer(check.get('pgd20_subset'))} images"
        if check.get("pgd20_acc") is not None
        else fmt.text(check.get("pgd20_skipped"))
    )
    verdict = fmt.text(check.get("verdict"))
    if check.get("allowed_weak"):
        verdict += " (allowed by allow_weak)"
    rows = [
        ("Clean accuracy", f"{fmt.pct(check.get('clean_acc'))} on {fmt.integer(check.get('clean_subset'))} images"),
        ("PGD-20 accuracy", pgd),
        ("Chance / refused below", f"{fmt.pct(check.get('chance'))} / {fmt.pct(check.get('threshold'))}"),
        ("Verdict", verdict),
        ("Normalisation", _normalization(check.get("normalization"))),
    ]
    for alt in fmt.as_list(check.get("alternatives")):
        a = fmt.as_dict(alt)
        rows.append(
            (f"With {fmt.esc(str(a.get('label')))} ({fmt.esc(str(a.get('name')))})", fmt.pct(a.get("clean_acc")))
        )
    note = f'<p class="note">{fmt.text(check.get("subset"))}.</p>'
    if check.get("message"):
        note += f'<p class="note"><strong>Warning:</strong> {fmt.text(check.get("message"))}</p>'
    return _card("Teacher check (before anything ran)", _table(None, rows, cls="wrap") + note)


def _dataset_table(report: Mapping[str, Any]) -> str:
    dataset = fmt.as_dict(report.get("dataset"))
    names = fmt.as_list(dataset.get("class_names"))
    shown = fmt.text(names)
    if len(names) > 20:
        shown = f"<details><summary>{len(names)} names</summary>{shown}</details>"
    rows = [
        ("Name", fmt.text(dataset.get("name"))),
        ("Classes", fmt.integer(dataset.get("num_classes"))),
        ("Train / val / test", " / ".join(fmt.integer(dataset.get(f"{k}_size")) for k in ("train", "val", "test"))),
        ("Image size", fmt.integer(dataset.get("image_size"))),
        ("Class subset", fmt.text(dataset.get("classes"))),
        ("Class names", shown),
    ]
    return _card("Dataset", _table(None, rows, cls="wrap"))


def _training_table(report: Mapping[str, Any]) -> str:
    training = fmt.as_dict(report.get("training"))
    if not training:
        return _card("Training", '<p class="empty">No training (evaluation only).</p>')
    rows = [
        ("Epochs", fmt.integer(training.get("epochs"))),
        ("Wall time", fmt.duration(training.get("seconds"))),
        ("Images / s", fmt.integer(training.get("images_per_second"))),
        ("Resumed from epoch", fmt.integer(training.get("resumed_from_epoch"))),
    ]
    history = _history(report)
    parts = _loss_part_names(history)
    headers = ["Epoch", "lr", "Loss", *map(fmt.esc, parts), "Train", "Val clean", "Val PGD", "Time", "Img/s"]
    epochs = [
        [
            fmt.text(h.get("epoch", i + 1)),
            fmt.text(h.get("lr")),
            fmt.fixed(h.get("loss"), 4),
            *(fmt.fixed(fmt.as_dict(h.get("loss_parts")).get(p), 4) for p in parts),
            fmt.pct(h.get("train_acc")),
            fmt.pct(h.get("val_clean_acc")),
            fmt.pct(h.get("val_pgd_acc")),
            fmt.duration(h.get("seconds")),
            fmt.integer(h.get("images_per_second")),
        ]
        for i, h in enumerate(history)
    ]
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
}


def _environment_table(report: Mapping[str, Any]) -> str:
    env = fmt.as_dict(report.get("environment"))
    rows = [
        (_ENVIRONMENT_LABELS.get(k, fmt.esc(k)), _code(v) if k == "git_commit" else fmt.text(v)) for k, v in env.items()
    ]
    rows.append(("Report schema", fmt.text(report.get("schema"))))
    return _card("Environment", _table(None, rows, cls="wrap"))


def _export_table(report: Mapping[str, Any]) -> str:
    """The ONNX export and its check against PyTorch (jobs only; evaluation reports have none)."""
    onnx = fmt.as_dict(fmt.as_dict(report.get("export")).get("onnx"))
    if not onnx:
        return ""
    diff, agreement = fmt.num(onnx.get("max_abs_diff")), fmt.num(onnx.get("agreement"))
    rows = [
        ("File", _code(onnx.get("file"))),
        ("Opset", fmt.text(onnx.get("opset"))),
        ("Input", fmt.text(onnx.get("input"))),
        ("Normalisation", fmt.text(onnx.get("normalization"))),
        ("Max |logit difference|", fmt.DASH if diff is None else f"{diff:.2e}"),
        (
            "Identical predictions",
            (fmt.DASH if agreement is None else f"{100 * agreement:.2f}%")
            + f" of {fmt.integer(onnx.get('images'))} test images",
        ),
        ("Checked with", f"ONNX Runtime {fmt.text(onnx.get('onnxruntime'))} ({fmt.text(onnx.get('provider'))})"),
    ]
    return _card("ONNX export", _table(None, rows, cls="wrap"))


def _spec_block(report: Mapping[str, Any]) -> str:
    spec = report.get("spec")
    if spec is None:
        return ""
    text = json.dumps(spec, indent=2, ensure_ascii=False, default=str)
    return _card(
        "Job specification",
        f"<details><summary>Show the spec as JSON</summary><pre>{fmt.esc(text)}</pre></details>",
        wide=True,
    )


def _tables(report: Mapping[str, Any]) -> str:
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


def _footer(report: Mapping[str, Any]) -> str:
    return (
        '<footer class="footer">'
        f"<p><strong>Protocol:</strong> {_protocol_summary(report)}.</p>"
        f"<p><strong>Provenance:</strong> {_provenance(report)}.</p></footer>"
    )


def _page_title(report: Mapping[str, Any]) -> str:
    student = fmt.as_dict(report.get("student")).get("arch") or "model"
    extras = [str(v) for v in (report.get("method"), fmt.as_dict(report.get("dataset")).get("name")) if v]
    return f"gacd report — {student}" + (f" ({', '.join(extras)})" if extras else "")


def render_html(report: dict[str, Any]) -> str:
    """Render a report dictionary (the content of ``report.json``) as one self-contained HTML page.

    The page opens with a strip of headline numbers (student clean, PGD-20 and AutoAttack accuracy
    with the teacher's beside them, compression and speedup), then inline-SVG charts (training
    curves, accuracy under each attack, accuracy versus ε, per-class accuracy), then compact tables
    with everything else and a footer stating the protocol and the provenance. It uses no
    JavaScript and loads nothing from the network.

    Args:
        report: The report, following the ``gacd-report/1`` schema. Any value may be missing or
            ``null``; it is then shown as an em dash, or its chart is left out.

    Returns:
        The HTML document as a string. Every string taken from the report is HTML-escaped.
    """
    data = fmt.as_dict(report)
    body = "".join([_header(data), _headline(data), _charts(data), _tables(data)])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{fmt.esc(_page_title(data))}</title><style>\n{CSS}</style></head>"
        f"<body><main>{body}</main>{_footer(data)}</body></html>\n"
    )
