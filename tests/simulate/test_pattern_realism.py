"""The pattern realism table: statistics measured on rendered episodes recover what was drawn, and a
small sample lies inside every reference range (simulate.pattern_realism)."""

import json

import numpy as np
import pytest

from eegfm.simulate.pattern_realism import KINDS, PATTERN_CLASSES, SOURCES, measure, references, render_episode
from eegfm.simulate.pattern_realism_output import POSTICTAL_RATIO, build_report, sample, wilson, write_report
from eegfm.simulate.waveforms import seizure_frequency


def _frequency_at(params, tau):
    """The drawn rhythm's instantaneous frequency ``tau`` seconds after the seizure's onset."""
    rhythm_tau = np.array([tau - params["rhythm_start_s"]])
    return float(
        seizure_frequency(rhythm_tau, params["f_start_hz"], params["f_end_hz"], params["freq_time_constant_s"])[0]
    )


@pytest.mark.parametrize("index", range(6))
def test_seizure_statistics_recover_the_drawn_evolution(index):
    rendered = render_episode("Seizure", index)
    episode, p = rendered.episode, rendered.episode.params
    stats = measure(rendered)
    ictal_s = episode.duration_s - p["postictal_s"]
    assert stats["duration_s"] == pytest.approx(ictal_s, abs=1.5)  # the rhythm's end, found on the signal
    # onset (4-8 s after onset) and end (the last 8 s) frequencies: the drawn rhythm at the window centres
    assert stats["onset_freq_hz"] == pytest.approx(_frequency_at(p, 6.0), abs=0.2)
    assert stats["end_freq_hz"] == pytest.approx(_frequency_at(p, stats["duration_s"] - 4.5), abs=0.2)
    assert stats["end_freq_hz"] >= p["f_end_hz"] - 0.1 and stats["onset_freq_hz"] <= p["f_start_hz"] + 0.1
    # the rhythm grows from its initial fraction of the full amplitude (RMS; spike-and-wave is peakier)
    assert 0.5 / p["initial_fraction"] < stats["amplitude_growth"] < 1.2 / p["initial_fraction"]
    # the field starts at the focus within seconds, then reaches its neighbours before the other side
    assert stats["focus_reached_s"] < 4.0 and stats["spread_neighbour_s"] < stats["spread_distant_s"]
    # post-ictal delta where it was drawn, at its drawn frequencies
    assert (stats["postictal_delta_ratio"] >= POSTICTAL_RATIO) == (p["postictal_s"] > 0)
    if p["postictal_s"] > 0:
        assert min(p["postictal_hz"]) - 0.3 <= stats["postictal_freq_hz"] <= max(p["postictal_hz"]) + 0.3


@pytest.mark.parametrize("cls", ["LPD", "GPD"])
@pytest.mark.parametrize("index", range(3))
def test_discharge_statistics_recover_rate_jitter_amplitude_and_shape(cls, index):
    rendered = render_episode(cls, index)
    episode, p = rendered.episode, rendered.episode.params
    stats = measure(rendered)
    assert stats["rate_hz"] == pytest.approx(p["rate_hz"], rel=0.03)
    # consecutive intervals differ by |N(0, sqrt(2) jitter)|: median 0.95 jitter
    assert stats["period_variation"] == pytest.approx(0.95 * p["jitter"], abs=0.025)
    assert stats["amplitude_uv"] == pytest.approx(p["amplitude_uv"], rel=0.1)
    main = next(w for w in p["waves"] if w[0] == 0.0 and w[3] == 0.0)  # the main phase: sigma, at 10 % 4.3 sigma
    assert stats["main_phase_ms"] == pytest.approx(4300 * main[1], rel=0.3)
    if cls == "LPD":
        assert stats["lateralization"] >= 2.0 and stats["field_maximum"][-1] in (
            "1357" if episode.side == "left" else "2468"
        )
    else:
        assert stats["lateralization"] < 1.2


@pytest.mark.parametrize("cls", ["LRDA", "GRDA"])
@pytest.mark.parametrize("index", range(3))
def test_rhythmic_delta_statistics_recover_frequency_amplitude_and_side(cls, index):
    rendered = render_episode(cls, index)
    episode, p = rendered.episode, rendered.episode.params
    stats = measure(rendered)
    assert stats["freq_hz"] == pytest.approx(p["freq_hz"], abs=0.05)
    waxing = 1.0 - p["wax_depth"] / 2  # the mean of the waxing and waning
    assert 0.9 < stats["amplitude_uv"] / (p["amplitude_uv"] * waxing) < 1.3  # the background adds a little
    if cls == "LRDA":
        assert stats["lateralization"] >= 2.0 and stats["field_maximum"] == episode.focus
    else:
        assert stats["lateralization"] < 1.2


@pytest.fixture(scope="module")
def small_report():
    return build_report(sample(8, seed=0), seed=0)


def test_every_statistic_of_a_small_sample_lies_inside_its_reference_range(small_report):
    judged = {
        (cls, name): entry["inside"]
        for cls, stats in small_report["classes"].items()
        for name, entry in stats.items()
        if entry["reference"]["kind"] != "none"
    }
    assert len(judged) == 23 and all(judged.values()), [k for k, inside in judged.items() if not inside]
    assert set(small_report["classes"]) == set(PATTERN_CLASSES)
    seizure = small_report["classes"]["Seizure"]
    assert seizure["amplitude_uv"]["category"] == "high" and seizure["amplitude_uv"]["inside"] is None


def test_every_reference_says_what_kind_it_is_and_where_it_comes_from():
    for cls in PATTERN_CLASSES:
        for name, reference in references(cls).items():
            assert reference.kind in KINDS and reference.measured, (cls, name)
            assert reference.has_range == (reference.kind != "none"), (cls, name)
            assert any(key in reference.source for key in SOURCES) or "no published range" in reference.source
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(5, 10)[0] < 0.5 < wilson(5, 10)[1]


def test_the_report_is_json_and_a_markdown_table_with_its_sources(small_report, tmp_path):
    write_report(small_report, tmp_path)
    assert json.loads((tmp_path / "pattern_realism.json").read_text()) == json.loads(json.dumps(small_report))
    text = (tmp_path / "pattern_realism.md").read_text()
    assert "| Seizure | `onset_freq_hz` |" in text and "| GRDA | `lateralization` |" in text
    assert all(f"**{key}**" in text for key in SOURCES)
    assert "23 of 23 statistics with a reference range lie inside it." in text
