"""benchmarks/compare.py: runs keyed by their specification, trained once, the table rebuilt from the
run folders; a missing run is trained only when asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _fakes import make_cifar10

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def compare(*args: str, data: Path, store: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--scale", "smoke", "--data-root", str(data)]
    cmd += ["--store", str(store), "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_compare_trains_once_resumes_and_rebuilds_the_table(tmp_path):
    data, store = tmp_path / "data", tmp_path / "store"
    make_cifar10(data, n_train=80, n_test=20)
    rows = ["--only", "ard", "gacd (defaults)", "--seeds", "0", "1"]
    out = compare(*rows, data=data, store=store)
    assert out.returncode == 1 and "teacher missing" in out.stderr  # nothing is trained unless asked
    out = compare(*rows, "--split", "val", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    folders = sorted(p for p in store.iterdir() if p.is_dir())
    assert len(folders) == 5  # the teacher, and two rows x two seeds
    for f in folders:
        assert {"spec.json", "report.json", "run.json", "student.safetensors"} <= {p.name for p in f.iterdir()}
        assert not (f / "checkpoint.pt").exists()
    table = json.loads((store / "table_val.json").read_text())
    assert [r["name"] for r in table["rows"]] == ["ard", "gacd (defaults)"]
    assert all(len(r["clean_acc"]) == 2 for r in table["rows"])
    student_reports = [json.loads((f / "report.json").read_text()) for f in folders if not f.name.startswith("teacher")]
    assert all(r["protocol"]["split"] == "val" for r in student_reports)
    # Again: nothing is retrained, the same table comes back.
    stamps = {f: (f / "report.json").stat().st_mtime_ns for f in folders}
    out = compare(*rows, "--split", "val", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    assert {f: (f / "report.json").stat().st_mtime_ns for f in folders} == stamps
    assert "| ard | 2 |" in (store / "table_val.md").read_text()
    # A row that is not there yet is reported missing, and trained when asked.
    out = compare("--only", "kd", "--seeds", "0", "--split", "val", data=data, store=store)
    assert "missing: kd seed 0" in out.stderr
    out = compare("--only", "kd", "--seeds", "0", "--split", "val", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    assert len([p for p in store.iterdir() if p.is_dir()]) == 6


def test_cross_task_teacher_and_students_see_disjoint_classes(tmp_path):
    data, store = tmp_path / "data", tmp_path / "store"
    make_cifar10(data, n_train=100, n_test=40)
    out = compare("--task", "cross", "--seeds", "0", "--split", "val", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    reports = {
        json.loads((f / "run.json").read_text())["name"]: json.loads((f / "report.json").read_text())
        for f in store.iterdir()
        if f.is_dir()
    }
    control = "gacd (features only, natural teacher)"
    students = ["gacd (features only)", "crd (features only)", "at (no teacher)", control]
    assert set(reports) == {"teacher", "teacher (natural)", *students}
    for name in ("teacher", "teacher (natural)"):
        assert reports[name]["spec"]["dataset"]["classes"] == [0, 1, 2, 3, 4]
    assert (reports["teacher"]["method"], reports["teacher (natural)"]["method"]) == ("at", "natural")
    for name in students:
        assert reports[name]["spec"]["dataset"]["classes"] == [5, 6, 7, 8, 9]
    # the control row differs from GACD's row by its teacher alone
    robust, natural = reports["gacd (features only)"]["spec"], reports[control]["spec"]
    assert robust["teacher"]["weights"] != natural["teacher"]["weights"]
    assert {k: v for k, v in robust.items() if k != "teacher"} == {k: v for k, v in natural.items() if k != "teacher"}
    for name in ("gacd (features only)", "crd (features only)", control):
        # declared cross-task: the teacher's accuracy on the students' labels is not measured, and why is said
        assert reports[name]["teacher"]["check"]["verdict"] == "exempt"
        assert reports[name]["spec"]["hyperparameters"]["method_params"]["cross_task"] is True
    table = json.loads((store / "table_val.json").read_text())
    assert [r["name"] for r in table["rows"]] == students
    assert [t["name"] for t in table["teachers"]] == ["teacher", "teacher (natural)"]
    assert "| teacher (tiny_wrn, natural; test images) |" in (store / "table_val.md").read_text()


def _compare_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare as cmp

    return cmp


def test_screening_variants_pin_every_gacd_parameter_so_new_defaults_keep_their_folders():
    from gacd_core.spec import GACDParams

    cmp = _compare_module()
    free = {"n_negatives", "cross_task"}  # set by the scale and the task, not by the screening
    assert set(GACDParams.model_fields) - {"method"} - free == set(cmp.GACD_SCREEN_BASE)
    base = cmp.ROWS["gacd (screening base)"].params
    stage2 = cmp.ROWS["gacd, in-batch, attack guided + 1 x CE"].params
    for row in cmp.VARIANTS[1:4]:
        changed = {k for k in row.params if row.params[k] != base[k]}
        assert 1 <= len(changed) <= 2, (row.name, changed)  # stage 1: one or both of its two choices
    for row in cmp.VARIANTS[4:]:
        changed = {k for k in row.params if row.params[k] != stage2[k]}
        # stage 2: one thing from stage 1's best (the CE attack also zeroes the guided attack's CE weight)
        assert changed in ({"attack", "attack_ce_weight"},) or len(changed) == 1, (row.name, changed)


def test_a_run_is_found_by_its_key_whatever_row_named_it(tmp_path):
    cmp = _compare_module()
    doc = {"method": "at", "student": {"arch": "tiny_resnet"}, "dataset": {"name": "cifar10"}, "seed": 0}
    new = cmp.run_folder(tmp_path, "first name", doc)
    assert new.name.startswith("first_name-") and not new.exists()
    new.mkdir()
    assert cmp.run_folder(tmp_path, "another row", doc) == new  # same specification, same folder
    doc["seed"] = 1
    assert cmp.run_folder(tmp_path, "another row", doc).name.startswith("another_row-")


def test_the_gacd_defaults_row_is_the_screening_variant_that_chose_the_defaults(tmp_path):
    """gacd_core/spec.py's GACD defaults are the validation screening's choice (docs/method.md, section 6):
    the "gacd (defaults)" row resolves to that variant's specification, so it reuses its run folder."""
    cmp = _compare_module()
    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(b"weights")
    scale = cmp.SCALES["cpu"]

    def key(name: str) -> str:
        return cmp.run_key(cmp.student_spec(scale, "data", cmp.ROWS[name], 0, str(teacher), "val"))

    assert key("gacd (defaults)") == key("gacd, in-batch, attack guided + 1 x CE")
    assert key("gacd (defaults)") != key("gacd (screening base)")


def test_the_target_check_compares_gacd_with_the_better_of_ard_and_rslad():
    cmp = _compare_module()

    def row(name, clean, aa):
        return {"name": name, "clean_acc": clean, "autoattack_acc": aa}

    base = [row("ard", [0.42, 0.44], [0.18, 0.20]), row("rslad", [0.40, 0.40], [0.20, 0.22])]
    met = cmp.target_check([*base, row("gacd (defaults)", [0.41, 0.41], [0.22, 0.22])])
    assert met["best_baseline"] == "rslad" and met["met"]  # +1.0 AA over rslad's 21.0, clean +1.0
    assert abs(met["aa_gain"] - 0.01) < 1e-9 and "**met**" in met["text"]
    short = cmp.target_check([*base, row("gacd (defaults)", [0.41, 0.41], [0.215, 0.22])])
    assert not short["met"] and "not met" in short["text"]  # +0.75 AA only
    costly = cmp.target_check([*base, row("gacd (defaults)", [0.385, 0.385], [0.25, 0.25])])
    assert not costly["met"]  # AA well up, but 1.5 points of clean accuracy lost against rslad
    assert cmp.target_check([*base, row("gacd (defaults)", [0.41], [])]) is None  # validation: no AutoAttack


def test_each_natural_teacher_control_differs_from_its_gacd_row_by_the_teacher_alone(tmp_path):
    cmp = _compare_module()
    scale = cmp.SCALES["cpu"]
    robust, natural = tmp_path / "robust.safetensors", tmp_path / "natural.safetensors"
    robust.write_bytes(b"robust weights")
    natural.write_bytes(b"natural weights")
    for same, control in [
        ("gacd (defaults)", "gacd (defaults, natural teacher)"),
        ("gacd (features only)", "gacd (features only, natural teacher)"),
    ]:
        assert (cmp.ROWS[same].teacher, cmp.ROWS[control].teacher) == ("at", "natural")
        a = cmp.student_spec(scale, "data", cmp.ROWS[same], 0, str(robust), "test")
        b = cmp.student_spec(scale, "data", cmp.ROWS[control], 0, str(natural), "test")
        assert {k: v for k, v in a.items() if k != "teacher"} == {k: v for k, v in b.items() if k != "teacher"}
        assert cmp.run_key(a) != cmp.run_key(b)
    assert cmp.ROWS["gacd (features only)"].params == {"lambda_kd": 0.0}  # the defaults less the KD term
    # the two teachers: one specification but for the training method
    ta, tn = (cmp.teacher_spec(scale, "data", "test", "same", m) for m in ("at", "natural"))
    assert ta.pop("method") == "at" and tn.pop("method") == "natural" and ta == tn


# --- issue 26: the equal tuning budget and the final table's tests ------------------------------------


def test_every_method_gets_the_same_screening_budget_on_the_validation_split(tmp_path):
    cmp = _compare_module()
    teacher = tmp_path / "teacher.safetensors"
    teacher.write_bytes(b"weights")
    counts = {f.name: len(f.setting_rows()) for f in cmp.FAMILIES}
    assert set(counts) == {"at", "trades", "kd", "ard", "rslad", "iad", "gacd", "at + kd"}
    assert set(counts.values()) == {cmp.SCREEN_RUNS} and cmp.SCREEN_RUNS >= 6
    plan = cmp.screen_plan(cmp.SCALES["cpu"], "data", str(teacher), tmp_path, [f.name for f in cmp.FAMILIES])
    assert len(plan) == len({p[3] for p in plan}) == 8 * cmp.SCREEN_RUNS  # every setting a run of its own
    for name, seed, doc, _ in plan:
        assert doc["evaluation"]["split"] == "val" and not doc["evaluation"]["autoattack"], name
        assert "pgd20" in doc["evaluation"]["attacks"] and seed == cmp.SCREEN_SEED
    rows = {f.name: f.setting_rows() for f in cmp.FAMILIES}
    for fam in ("ard", "rslad"):  # the KL reduction both ways: the official mean, the papers' batchmean
        assert {r.params["kl_reduction"] for r in rows[fam]} == {"mean", "batchmean"}
    assert {r.params["alpha"] for r in rows["ard"]} >= {1.0, 0.5}
    assert {r.params["temperature"] for r in rows["ard"]} >= {30.0, 4.0}
    assert max(r.params["lambda_nce"] for r in rows["gacd"]) >= 10  # a real share of the loss
    assert {r.params["lambda_ce"] for r in rows["gacd"]} == {1.0, 0.5}
    for r in rows["at + kd"]:  # GACD with neither the contrastive term nor the guided attack
        assert (r.params["lambda_nce"], r.params["attack"], r.params["attack_ce_weight"]) == (0.0, "ce", 0.0)
    for fam, fam_rows in rows.items():
        lrs = {r.hyper["lr"] for r in fam_rows}
        assert len(lrs) >= 2, fam  # the learning rate crossed with the weights
    # the official ARD setting at the scale's lr is the existing "ard" row: its run folder is reused
    ard = next(r for r in rows["ard"] if r.params["kl_reduction"] == "mean" and r.hyper["lr"] == 0.1)
    key = cmp.run_key(cmp.student_spec(cmp.SCALES["cpu"], "data", ard, 0, str(teacher), "val"))
    assert key == cmp.run_key(cmp.student_spec(cmp.SCALES["cpu"], "data", cmp.ROWS["ard"], 0, str(teacher), "val"))


def test_the_choice_is_validation_pgd20_then_clean_accuracy_then_the_screening_order():
    cmp = _compare_module()

    def r(name, pgd, clean):
        return {"name": name, "pgd20_acc": pgd, "clean_acc": clean}

    assert cmp.choose([r("a", 0.30, 0.50), r("b", 0.31, 0.40), r("c", 0.29, 0.60)])["name"] == "b"
    assert cmp.choose([r("a", 0.30, 0.50), r("b", 0.30, 0.52), r("c", 0.30, 0.51)])["name"] == "b"  # tie: clean
    assert cmp.choose([r("a", 0.30, 0.50), r("b", 0.30, 0.50)])["name"] == "a"  # full tie: the first
    assert cmp.choose([r("a", None, 0.9), r("b", 0.01, 0.1)])["name"] == "b"  # no PGD-20: never chosen


def test_final_rows_need_a_complete_screen_and_add_gacd_without_its_contrastive_term():
    cmp = _compare_module()
    results = {}
    for fam in cmp.FAMILIES:
        rows = fam.setting_rows()
        n = len(rows) if fam.name != "iad" else len(rows) - 1  # iad's screening is not finished
        results[fam.name] = [
            {"name": row.name, "row": row, "pgd20_acc": 0.2 + 0.01 * (i == 3), "clean_acc": 0.5}
            for i, row in enumerate(rows[:n])
        ]
    chosen = cmp.chosen_rows(results)
    assert "iad" not in chosen  # waits for its whole budget
    assert chosen["trades"].params == cmp.FAMILY["trades"].setting_rows()[3].params
    assert chosen["trades"].hyper == {"lr": cmp.SCREEN_LRS[0]}
    g, without = chosen["gacd"], chosen[cmp.WITHOUT_NCE]
    assert without.params == {**g.params, "lambda_nce": 0.0} and without.hyper == g.hyper


def _fake_run(store, folder, labels, bits):
    from gacd_core import per_image

    (store / folder).mkdir(parents=True)
    doc = per_image.document("test", labels, {"pgd20": bits}, bits[:4], [0, 1, 2, 3])
    per_image.write(store / folder / "per_image.json", doc)


def test_paired_tests_read_the_per_image_bits_of_both_rows_seed_by_seed(tmp_path):
    cmp = _compare_module()
    import numpy as np

    labels = np.arange(40) % 10
    entries = []
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        a = rng.random(40) < 0.5
        b = a.copy()
        b[:6] = ~b[:6]  # six discordant images per seed
        for name, bits in (("gacd", a), ("trades", b)):
            _fake_run(tmp_path, f"{name}-{seed}", labels, bits)
            entries.append({"name": name, "seed": seed, "folder": f"{name}-{seed}"})
    test = cmp.paired_tests(entries, "gacd", "trades", tmp_path)
    assert test["seeds"] == [0, 1, 2]
    for t in test["mcnemar"]["pgd20"]:
        assert t["b"] + t["c"] == 6 and t["n"] == 40
    text = "\n".join(cmp.paired_markdown(test))
    assert "pgd20, seed 0: McNemar b = " in text and "sign test" in text and "autoattack" in text
    # different images: no pairing
    _fake_run(tmp_path, "other-0", labels[::-1].copy(), labels < 3)
    entries.append({"name": "other", "seed": 0, "folder": "other-0"})
    assert cmp.paired_tests(entries, "gacd", "other", tmp_path)["mcnemar"]["pgd20"] == []


def test_screen_then_final_tables_on_the_smoke_scale(tmp_path):
    """One family end to end: 8 screening runs on validation, the chosen one on the test split with its
    per-image bits, the tables written; nothing retrained on the second call."""
    data, store = tmp_path / "data", tmp_path / "store"
    make_cifar10(data, n_train=80, n_test=20)
    out = compare("--screen", "--final", "--families", "trades", "--seeds", "0", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    screen = (store / "table_screen.md").read_text()
    assert screen.count("| trades |") == 8 and screen.count("**chosen**") == 1
    final = json.loads((store / "table_final.json").read_text())
    assert [r["name"] for r in final["rows"]] == ["trades"]
    folder = store / final["rows"][0]["folders"][0]
    bits = json.loads((folder / "per_image.json").read_text())
    assert bits["n"] == 20 and set(bits["correct"]) == {"clean", "fgsm"} and bits["autoattack"]["n"] == 8
    spec = json.loads((folder / "report.json").read_text())["spec"]
    assert spec["evaluation"]["split"] == "test" and spec["evaluation"]["autoattack_subset"] == 8
    stamps = {f: (f / "report.json").stat().st_mtime_ns for f in store.iterdir() if f.is_dir()}
    out = compare("--screen", "--final", "--families", "trades", "--seeds", "0", "--train", data=data, store=store)
    assert out.returncode == 0, out.stderr
    assert {f: (f / "report.json").stat().st_mtime_ns for f in store.iterdir() if f.is_dir()} == stamps


def test_a_one_process_resources_section_keeps_a_stored_runs_key() -> None:
    """Issue 27's ``resources`` field, at one process, must not rename the stored runs' folders."""
    cmp = _compare_module()
    assert cmp._one_process(None)
    assert cmp._one_process({"gpus": None, "processes": None, "sync_batchnorm": False})
    assert cmp._one_process({"gpus": 1})
    assert not cmp._one_process({"processes": 2})
    assert not cmp._one_process({"gpus": 1, "sync_batchnorm": True})
