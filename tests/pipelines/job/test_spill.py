"""Spill files on real eegmat windows: scores written in place equal a fresh encoding, rejections,
truncation, sampling and clean-up."""

import copy
import dataclasses
import os

import numpy as np
import pytest

from eegfm.contract import schema
from eegfm.core.stores import remove_folder
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import PreprocessConfig, Window, process_recording
from eegfm.pipelines.job.spill import (
    AE_INDEX,
    SpillWriter,
    sample_items,
    score_spill,
    spill_path,
)

KEY = b"a-test-key-of-32-bytes-for-hmac!"


@pytest.fixture(scope="module")
def windows(shared_data):
    items, _, _ = discover([str(shared_data / "eegmat" / "Subject00_2.edf")], dataset="eegmat")
    config = PreprocessConfig()
    found = [e for e in process_recording(items[0], KEY, config, config.config_hash()) if isinstance(e, Window)]
    assert len(found) >= 5
    return found


def _spill(windows, folder):
    writer = SpillWriter(spill_path(str(folder), windows[0].source))
    for window in windows:
        writer.add(window)
    writer.close()
    return writer.recording(windows[0].source)


def _rescored(record, score):
    rec = copy.copy(record)
    quality = rec.quality.copy()
    quality[AE_INDEX] = np.float32(score)
    rec.quality = quality
    rec.artifact_score = np.float32(max(float(record.artifact_score), float(np.float32(score))))
    return rec


def test_patchable_encoding_is_encode_example_and_patching_equals_re_encoding(windows):
    record = windows[0].record
    data, offsets = schema.encode_example_patchable(record, ("quality", "artifact_score"))
    assert data == schema.encode_example(record)
    patched = bytearray(data)
    patched[offsets["quality"] + 4 * AE_INDEX : offsets["quality"] + 4 * AE_INDEX + 4] = np.float32(0.375).tobytes()
    patched[offsets["artifact_score"] : offsets["artifact_score"] + 4] = np.float32(0.875).tobytes()
    expected = copy.copy(record)
    expected.quality = record.quality.copy()
    expected.quality[AE_INDEX] = 0.375
    expected.artifact_score = np.float32(0.875)
    assert bytes(patched) == schema.encode_example(expected)
    with pytest.raises(schema.SchemaError, match="float list"):
        schema.encode_example_patchable(record, ("label",))


def _all(scored):
    return list(scored.records(0, len(scored.sizes)))


def test_scores_are_written_into_the_records_read_back(windows, tmp_path):
    spilled = _spill(windows, tmp_path)
    assert len(spilled) == len(windows) and spilled.features.shape[0] == len(windows)
    assert spilled.site == windows[0].record.site_id.decode()
    # No model: the records exactly as encoded.
    unscored, rejected = score_spill(spilled, None, 1.0)
    assert rejected == [] and _all(unscored) == [schema.encode_example(w.record) for w in windows]
    scores = np.linspace(0.05, 0.95, len(windows))
    scored, rejected = score_spill(spilled, scores, 1.0)
    got = _all(scored)
    assert rejected == [] and got == [schema.encode_example(_rescored(w.record, s)) for w, s in zip(windows, scores)]
    decoded = schema.decode_example(got[-1])
    assert decoded.quality[AE_INDEX] == np.float32(scores[-1])
    # Any range, in any order of requests: the same records (the reader seeks to each one).
    assert list(scored.records(2, 4)) + list(scored.records(0, 2)) == got[2:4] + got[:2]
    assert scored.order == (spilled.recording_id, spilled.source)


def test_windows_over_the_limit_become_rejections_naming_the_file(windows, tmp_path):
    spilled = _spill(windows, tmp_path)
    scores = np.full(len(windows), 0.2)
    scores[1] = 0.9
    scored, rejected = score_spill(spilled, scores, 0.5)
    over = [i for i, w in enumerate(windows) if i == 1 or float(w.record.artifact_score) > 0.5]
    assert [r.window_start_s for r in rejected] == [
        pytest.approx(float(windows[i].record.window_start_s)) for i in over
    ]
    assert rejected[over.index(1)].source == windows[1].source
    assert "artifact_score=0.9 > max_artifact_score=0.5" in rejected[over.index(1)].reasons[0]
    kept = [i for i in range(len(windows)) if i not in over]
    assert scored.kept.tolist() == kept
    assert _all(scored) == [schema.encode_example(_rescored(windows[i].record, scores[i])) for i in kept]


def test_a_truncated_spill_file_is_an_error_naming_it(windows, tmp_path):
    spilled = _spill(windows, tmp_path)
    size = os.path.getsize(spilled.spill)
    with open(spilled.spill, "r+b") as fh:  # keep whole records only: one window missing
        fh.truncate(size - (size // len(windows)))
    scored, _ = score_spill(spilled, None, 1.0)
    with pytest.raises(OSError, match=os.path.basename(spilled.spill) + r".*cut short"):
        _all(scored)


def test_a_corrupt_spill_record_is_an_error_naming_it(windows, tmp_path):
    spilled = _spill(windows, tmp_path)
    with open(spilled.spill, "r+b") as fh:
        fh.seek(int(spilled.frame_offsets[1]) + 100)
        fh.write(b"\xff\xfe")
    scored, _ = score_spill(spilled, None, 1.0)
    with pytest.raises(OSError, match=os.path.basename(spilled.spill) + r".*data CRC mismatch"):
        _all(scored)


def test_sample_keys_are_stable_and_sites_filter(windows, tmp_path):
    spilled = _spill(windows, tmp_path)
    items = sample_items(spilled, frozenset())
    assert [k for k, _ in items] == [k for k, _ in sample_items(spilled, frozenset({spilled.site}))]
    assert len({k for k, _ in items}) == len(windows)
    assert sample_items(spilled, frozenset({"site-other"})) == []
    np.testing.assert_array_equal(items[0][1], spilled.features[0])


def test_a_corpus_eval_split_recording_is_counted_by_its_split_and_never_sampled(windows, tmp_path):
    """A benchmark's test recordings (TUH's edf/eval/) shape nothing that scores the windows: the
    artifact autoencoder's sample leaves them out; its train recordings are sampled as before."""

    def spilled_as(split):
        relabeled = [
            dataclasses.replace(w, record=dataclasses.replace(w.record, corpus_split=split.encode())) for w in windows
        ]
        return _spill(relabeled, tmp_path / split)

    train, evaluation, unsplit = spilled_as("train"), spilled_as("eval"), spilled_as("")
    assert (train.corpus_split, evaluation.corpus_split, unsplit.corpus_split) == ("train", "eval", "")
    assert len(sample_items(train, frozenset())) == len(windows)
    assert sample_items(evaluation, frozenset()) == [] == sample_items(evaluation, frozenset({evaluation.site}))


def test_remove_folder_deletes_a_spill_folder(windows, tmp_path):
    folder = tmp_path / ".spill-test"
    _spill(windows, folder)
    assert len(os.listdir(folder)) == 1
    remove_folder(str(folder))
    assert not folder.exists()
    remove_folder(str(folder))  # gone already: nothing to do
