"""The report end to end on a small real run folder: one self-contained HTML file whose every
figure is an inline PNG, its Markdown twin, and report.json with the numbers, which agree with
what the stages wrote; a section without inputs is left out, a line at the top naming the command
that fills it."""

from __future__ import annotations

import base64
import json
import re
import struct

import pytest

from eegfm.evaluation.report import cli
from eegfm.evaluation.report.sections_sites import ALL_SITES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = (
    "summary",
    "data",
    "curves",
    "per_site",
    "loso",
    "confusion",
    "calibration",
    "robustness",
    "benchmark",
    "embeddings",
    "shift",
    "predictions",
    "explanations",
)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_html_is_one_self_contained_file_with_inline_pngs(report):
    html = report["html"].read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<link" not in html and "<script" not in html and "@import" not in html and "url(" not in html
    sources = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(sources) == html.count("<img") >= 8  # curves, sites, loso, 2 confusions, calibration ...
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        width, height = png_size(base64.b64decode(source.split(",", 1)[1], validate=True))
        assert width > 100 and height > 100
    for key in SECTIONS:
        # the benchmark has no inputs here: no empty section, one line saying what fills it
        assert (f'<section id="{key}">' in html) == (key != "benchmark")
    assert "Not in this report: Benchmark. No benchmark.json (python -m eegfm.evaluation.comparison)" in html


def test_the_markdown_has_the_same_sections_and_its_figures_beside_it(report):
    markdown = report["markdown"].read_text(encoding="utf-8")
    html = report["html"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == html.count("<img")
    for link in links:
        assert link.startswith("report_files/")
        png_size((report["markdown"].parent / link).read_bytes())
    assert markdown.count("\n## ") == len(SECTIONS) - 1  # all but the benchmark


def test_the_json_numbers_agree_with_what_the_stages_wrote(report, run_folder):
    document = json.loads(report["json"].read_text())
    sections = document["sections"]
    assert list(sections) == list(SECTIONS)
    assert sections["benchmark"]["missing"].startswith("No benchmark.json")
    assert all(sections[k]["missing"] is None for k in SECTIONS if k != "benchmark")

    data = sections["data"]["numbers"]["tfrecords"]
    manifest = json.loads((run_folder / "tfrecords" / "manifest.json").read_text())
    assert data["n_sites"] == 3 and data["n_subjects"] == 6 and data["windows"] == manifest["counts"]["windows"]
    assert all(site["subjects"] == 2 and site["recordings"] == 4 for site in data["sites"].values())
    assert sum(site["windows"] for site in data["sites"].values()) == data["windows"]

    groups = sections["per_site"]["numbers"]["groups"]
    within, unseen = groups["held-out subjects (val split)"], groups["unseen site (leave-one-site-out)"]
    evaluated = json.loads((run_folder / "finetune" / "eval.json").read_text())
    # the model re-scored on its validation subjects gives eval.json's calibrated numbers
    assert within[ALL_SITES]["kl"]["value"] == pytest.approx(evaluated["val_calibrated"]["kl"], rel=1e-4)
    assert within[ALL_SITES]["accuracy"]["value"] == pytest.approx(evaluated["val_calibrated"]["accuracy"])
    loso = json.loads((run_folder / "loso" / "loso.json").read_text())["sites"]
    assert set(unseen) == set(loso)
    for site, fold in loso.items():
        assert unseen[site]["kl"]["value"] == pytest.approx(fold["test"]["kl"], rel=1e-4)
        assert unseen[site]["n_windows"] == fold["test"]["n_windows"] and unseen[site]["kl"]["n_subjects"] == 2
    for result in [*within.values(), *unseen.values()]:
        for metric in ("kl", "kl_vs_baseline", "accuracy"):
            estimate = result[metric]
            if estimate["n_subjects"] > 1:
                assert estimate["low"] <= estimate["value"] <= estimate["high"]
            else:
                assert estimate["low"] is None and estimate["high"] is None

    shift = sections["shift"]["numbers"]
    assert 0.0 <= shift["probe"]["accuracy"] <= 1.0 and shift["probe"]["chance"] == pytest.approx(0.5)
    assert all(m["mmd2"] >= 0.0 and 0.0 < m["p_value"] <= 1.0 for m in shift["mmd"].values())
    assert sections["embeddings"]["numbers"]["n_windows"] == evaluated["val"]["n_windows"]
    explained = sections["explanations"]["numbers"]["windows"]
    (path,) = sorted((run_folder / "predictions" / "explanations").glob("*.json"))
    assert [w["explanation_reliable"] for w in explained] == [json.loads(path.read_text())["explanation_reliable"]]
    predictions = sections["predictions"]["numbers"]
    assert {p["target"] for p in predictions["pages"]} <= {"rest", "task"} and predictions["pages"]
    assert predictions["recordings_with_spectrum"] >= 1 and "spectra.png" in sections["predictions"]["figures"]
    scored = json.loads((run_folder / "predictions" / "recordings.json").read_text())["recordings"]
    mix = predictions["class_mix"]["predictions (eegfm-predict)"]
    assert mix["windows"] == sum(r["windows"] for r in scored) and sum(mix["shares"].values()) == pytest.approx(1.0)
    robustness = json.loads((run_folder / "robustness" / "robustness.json").read_text())
    (numbers,) = sections["robustness"]["numbers"].values()
    assert numbers["clean"] == pytest.approx(robustness["clean"]["kl"])


def test_sections_without_inputs_say_what_is_missing(three_sites, tmp_path):
    paths = cli.run([str(three_sites), "--output", str(tmp_path / "data.html")])
    sections = json.loads(paths["json"].read_text())["sections"]
    assert sections["data"]["missing"] is None and sections["data"]["numbers"]
    assert sections["per_site"]["missing"].startswith("No fine-tuned model (run.json, eval.json, model/)")
    assert sections["loso"]["missing"].startswith("No loso.json")
    html = paths["html"].read_text()
    assert 'class="missing"' not in html and html.count("<section ") == 2  # the summary and the data
    shown_missing = html.count('<p class="meta">Not in this report: ')
    assert shown_missing == sum(s["missing"] is not None for s in sections.values()) == len(SECTIONS) - 2


def test_every_option_has_help_and_bad_arguments_are_named(tmp_path, capsys):
    parser = cli.build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings or action.dest
    with pytest.raises(SystemExit):
        cli.run([str(tmp_path), "--output", str(tmp_path / "report.pdf")])
    assert "--output: expected a file name ending in .html" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.run([str(tmp_path / "absent"), "--output", str(tmp_path / "r.html")])
    assert f"RUN_DIR {tmp_path / 'absent'}: no such folder" in capsys.readouterr().err
