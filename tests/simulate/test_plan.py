"""Planning: timelines, windows, class coverage, ids, order independence."""

import dataclasses

import numpy as np
import pytest

from eegfm.simulate.corpus import CorpusConfig, plan_corpus
from eegfm.simulate.plan import (
    MIN_SEGMENT_S,
    WINDOW_S,
    ensure_class_coverage,
    plan_segments,
    plan_windows,
)
from eegfm.simulate.sites import CLASSES, archetypes


@pytest.mark.parametrize("duration", [60, 61, 119, 180, 300, 3600])
def test_segments_tile_the_recording_and_each_holds_a_window(duration):
    for seed in range(10):
        segments = plan_segments(np.random.default_rng(seed), duration)
        assert segments[0][0] == 0 and segments[-1][1] == duration
        assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
        assert all(end - start >= MIN_SEGMENT_S for start, end in segments)


def test_windows_lie_inside_their_segment_and_spectrogram_windows_share_the_centre():
    rng = np.random.default_rng(0)
    for segment in [(0, 60), (60, 300), (1000, 1240)]:
        for offset, spec in plan_windows(rng, segment, duration_s=3600):
            assert segment[0] <= offset and offset + WINDOW_S <= segment[1] and offset % 2 == 0
            assert spec + 300 == pytest.approx(offset + 25) or spec in (0.0, 3000.0)
    assert plan_windows(rng, (0, 60), duration_s=300)[0][1] == 0.0  # short recording: offset 0


def test_class_coverage_fills_missing_classes_from_the_most_common():
    site = archetypes()[0]
    drawn = [(site, c) for c in ["Other"] * 5 + ["LPD"] * 3]
    fixed = ensure_class_coverage(drawn)
    assert set(fixed) == set(CLASSES) and len(fixed) == 8
    assert ensure_class_coverage(drawn[:5]) == ["Other"] * 5  # fewer than six: left alone


def test_plans_are_deterministic_and_independent_of_corpus_size():
    small = plan_corpus(CorpusConfig(sites=2, subjects_per_site=1, recordings_per_subject=1, minutes=3))
    large = plan_corpus(CorpusConfig(sites=3, subjects_per_site=2, recordings_per_subject=2, minutes=3))
    again = plan_corpus(CorpusConfig(sites=2, subjects_per_site=1, recordings_per_subject=1, minutes=3))
    assert [r.eeg_id for r in small.recordings] == [r.eeg_id for r in again.recordings]
    by_key = {r.key: r for r in large.recordings}
    for recording in small.recordings:
        other = by_key[recording.key]
        assert other.eeg_id == recording.eeg_id
        assert other.planted == recording.planted
        assert other.background == recording.background


def test_ids_are_unique_and_windows_count_within_recordings():
    plan = plan_corpus(CorpusConfig(sites=4, subjects_per_site=3, recordings_per_subject=2, minutes=6))
    eeg_ids = [r.eeg_id for r in plan.recordings]
    label_ids = [w.label_id for r in plan.recordings for w in r.windows]
    assert len(set(eeg_ids)) == len(eeg_ids) and len(set(label_ids)) == len(label_ids)
    for recording in plan.recordings:
        assert [w.eeg_sub_id for w in recording.windows] == list(range(len(recording.windows)))
        for window in recording.windows:
            episode = recording.episodes[window.episode_index]
            assert episode.start_s <= window.offset_s <= episode.end_s - WINDOW_S
    patients = {(r.site_index, r.patient.subject_index): r.patient.patient_id for r in plan.recordings}
    assert len(set(patients.values())) == len(patients) == 12
    assert len({r.site.name for r in plan.recordings}) == 4


def test_seizures_start_after_some_background():
    plan = plan_corpus(CorpusConfig(sites=1, subjects_per_site=6, recordings_per_subject=2, minutes=5))
    leads = [
        episode.start_s - (recording.episodes[i - 1].end_s if i else 0.0)
        for recording in plan.recordings
        for i, episode in enumerate(recording.episodes)
        if episode.cls == "Seizure"
    ]
    assert leads and all(5.0 <= lead <= 15.0 for lead in leads)


def test_corpus_config_validation_names_the_field():
    with pytest.raises(Exception, match="minutes: expected a value in"):
        CorpusConfig(minutes=0.5)
    with pytest.raises(Exception, match="format: expected one of 'edf', 'hms', 'both'"):
        CorpusConfig(format="xml")
    with pytest.raises(Exception, match="sites: expected an integer"):
        CorpusConfig(sites=2.5)
    assert dataclasses.replace(CorpusConfig(), minutes=1.5).duration_s == 90


def test_people_differ_in_scalp_amplitude_and_some_have_slowing():
    """A person's scalp amplitude varies several-fold across patients (as in real corpora) and
    stays the same across their recordings; about 30 % of recordings carry polymorphic slowing."""
    config = CorpusConfig(sites=4, subjects_per_site=10, recordings_per_subject=2, minutes=1.0, seed=3)
    plans = plan_corpus(config).recordings
    by_patient: dict[tuple[int, int], set[float]] = {}
    for plan in plans:
        by_patient.setdefault((plan.site_index, plan.patient.subject_index), set()).add(plan.scalp_scale)
    assert all(len(scales) == 1 for scales in by_patient.values())
    scales = np.array([next(iter(s)) for s in by_patient.values()])
    assert scales.max() / scales.min() > 3 and 0.7 < np.median(scales) < 1.4
    slowed = np.mean([plan.background.slowing_uv > 0 for plan in plans])
    assert 0.1 < slowed < 0.5
    calm = dataclasses.replace(
        config,
        site_profiles=tuple(site.replace(amplitude_spread=0.0, slowing_probability=0.0) for site in archetypes()),
    )
    assert {(p.scalp_scale, p.background.slowing_uv) for p in plan_corpus(calm).recordings} == {(1.0, 0.0)}
