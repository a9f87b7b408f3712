"""model.batch through the loader: windows of one length as the batch the model reads."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from eegfm.contract import schema
from eegfm.contract.schema import encode_example
from eegfm.contract.windows import Window
from eegfm.model.batch import collate
from eegfm.model.inputs import encode_age, encode_sex
from eegfm.training.data import LoaderConfig, RecordFilter, model_inputs
from tests.training.data.conftest import _entry, _epoch, _example, _num_threads, _same_batch


def test_batch_format_feeds_the_model(pipeline_output):
    batches = _epoch(pipeline_output, LoaderConfig(batch_size=6, num_workers=0, shuffle=False))
    batch = next(b for b in batches if b["has_votes"].any())
    n, t = batch["eeg"].shape[0], batch["eeg"].shape[-1]
    assert batch["eeg"].dtype == torch.float32 and batch["eeg"].shape == (n, 19, t)
    assert batch["channel_mask"].dtype == torch.float32 and set(batch["channel_mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["ecg"].shape == (n, t) and batch["votes"].shape == batch["targets"].shape == (n, 6)
    voted = batch["has_votes"]
    assert voted.dtype == torch.bool and torch.allclose(batch["targets"][voted].sum(1), torch.ones(int(voted.sum())))
    assert torch.equal(batch["n_votes"], batch["votes"].sum(1)) and batch["label"].dtype == torch.int64
    assert all(torch.isnan(s) or s in (0.0, 1.0) for s in batch["sex"])
    assert all(isinstance(batch[k][0], str) for k in ("site_id", "subject_id", "recording_id", "task"))
    inputs = model_inputs(batch)
    assert set(inputs) == {"eeg", "channel_mask", "ecg", "age", "sex"}
    from eegfm.model import create_model

    model = create_model("tiny", head="hms6").eval()
    short = next(b for b in batches if b["eeg"].shape[-1] == 2560)  # 10 s windows: a quick forward
    small = model_inputs({k: v[:2] for k, v in short.items()})
    with torch.no_grad():
        assert model(**small).logits.shape == (2, 6)
    config = LoaderConfig(batch_size=6, num_workers=1, shuffle=False, eeg_dtype="float16")
    half = next(b for b in _epoch(pipeline_output, config) if b["has_votes"].any())  # via a worker
    assert half["eeg"].dtype == half["ecg"].dtype == torch.float16
    assert half["eeg"].untyped_storage().data_ptr() == half["ecg"].untyped_storage().data_ptr()  # one segment
    assert _same_batch({**half, "eeg": half["eeg"].float(), "ecg": half["ecg"].float()}, batch)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_a_batch_holds_each_windows_decoded_fields(records, dtype):
    voted = next(r for r in records if r.votes.size and r.ecg is not None)
    same = [r for r in records if r.eeg.shape == voted.eeg.shape][:4]
    variants = (
        [dataclasses.replace(same[0], age=42.0, sex=b"F")]
        + same[1:]
        + [dataclasses.replace(voted, ecg=None), dataclasses.replace(voted, votes=np.zeros(0, np.float32))]
    )
    raws = [encode_example(r) for r in variants]
    raws.append(
        _example(
            b"".join(  # age and sex absent: their defaults
                _entry(name, *feature)
                for name, feature in sorted(schema.decode_features(raws[0]).items())
                if name not in ("age", "sex")
            ),
        )
    )
    windows = [Window(raw, "mem", i) for i, raw in enumerate(raws)]
    for threads in (1, 2):  # one conversion per window, or one for the batch
        with _num_threads(threads):
            batch = collate(windows, dtype)
        assert batch["eeg"].dtype == batch["ecg"].dtype == dtype and batch["eeg"].shape[0] == len(windows)
        for row, window in enumerate(windows):
            fields = window.decode()
            assert torch.equal(batch["eeg"][row], torch.from_numpy(fields["eeg"]).to(dtype))
            if fields["ecg"] is None:
                assert batch["ecg"][row].isnan().all()
            else:
                assert torch.equal(batch["ecg"][row], torch.from_numpy(fields["ecg"]).to(dtype))
            assert batch["channel_mask"][row].tolist() == fields["channel_mask"].tolist()
            assert batch["votes"][row].tolist() == (fields["votes"].tolist() or [0.0] * 6)
            assert batch["has_votes"][row] == bool(fields["votes"].size)
            assert batch["label"][row] == fields["label"] and batch["window_start"][row] == fields["window_start_index"]
            assert batch["site_id"][row] == fields["site_id"].decode() and batch["task"][row] == fields["task"].decode()
            torch.testing.assert_close(batch["age"][row : row + 1], encode_age([fields["age"]]), equal_nan=True)
            torch.testing.assert_close(batch["sex"][row : row + 1], encode_sex([fields["sex"]]), equal_nan=True)
    assert batch["age"][0] == 42 and batch["sex"][0] == 0 and batch["age"][-1].isnan() and batch["sex"][-1].isnan()


def test_ecg_is_nan_where_a_window_has_none(pipeline_output, records):
    with_ecg = records[0]
    without = dataclasses.replace(with_ecg, ecg=None)
    windows = [Window(encode_example(r), "mem", i) for i, r in enumerate([with_ecg, without])]
    batch = collate(windows)
    assert torch.isnan(batch["ecg"][1]).all() and not torch.isnan(batch["ecg"][0]).any()
    assert "ecg" not in collate(windows[1:])


def test_token_budget_buckets_by_length_within_budget(pipeline_output):
    budget = 2 * 12800
    config = LoaderConfig(batch_size=None, token_budget=budget, max_batch_size=6, num_workers=0)
    batches = _epoch(pipeline_output, config)
    sizes = Counter((b["eeg"].shape[-1], b["eeg"].shape[0]) for b in batches)
    assert all(n * t <= budget for t, n in sizes)
    assert {n for (t, n) in sizes if t == 12800} <= {1, 2} and (2560, 6) in sizes  # capped: 10 -> 6
    assert sum(t * n for (t, n), count in sizes.items() for _ in range(count)) == 6 * 12800 + 24 * 2560
    assert [b["eeg"].shape for b in batches] == [b["eeg"].shape for b in _epoch(pipeline_output, config)]
    patches = LoaderConfig(batch_size=None, token_budget=20, patch_size=256, max_batch_size=64, num_workers=0)
    assert patches.batch_size_for(2560) == 2 and patches.batch_size_for(12800) == 1
    fixed = _epoch(pipeline_output, LoaderConfig(batch_size=4, num_workers=0, filters=RecordFilter(tasks=("",))))
    assert [len(b["label"]) for b in fixed] == [4] * 6  # uniform lengths: a fixed batch size


@pytest.fixture(scope="module")
def hms_spectrogram_records(shared_data):
    """The real HMS EEG's 50 s window three ways: with a Kaggle spectrogram (300 frames), with one
    computed from the window (25 frames) and with none."""
    from eegfm.pipelines.datasets import LabeledWindow, SourceItem
    from eegfm.pipelines.job.process import process_recording
    from eegfm.pipelines.job.process_io import PreprocessConfig
    from eegfm.pipelines.job.process_io import Window as PipelineWindow

    hms = shared_data / "hms"
    item = SourceItem(
        path=str(hms / "train_eegs" / "1000913311.parquet"),
        dataset="hms",
        site="hms",
        task="hms6",
        windows=(LabeledWindow(0.0, 50.0, 1, (0.0, 3.0, 1.0, 0.0, 0.0, 0.0), "hms6", spectrogram_offset_s=0.0),),
        spectrogram_path=str(hms / "train_spectrograms" / "1000189855.parquet"),
    )
    records = []
    for variant, config in (
        (item, PreprocessConfig()),
        (dataclasses.replace(item, spectrogram_path=""), PreprocessConfig()),
        (item, PreprocessConfig(spectrogram=False)),
    ):
        events = process_recording(variant, b"k" * 32, config, config.config_hash())
        records += [e.record for e in events if isinstance(e, PipelineWindow)]
    assert [r.spectrogram_frames for r in records] == [300, 25, 0]
    return records


def test_spectrograms_are_centre_cropped_to_the_fewest_frames_with_nan_rows_where_absent(hms_spectrogram_records):
    from eegfm.model.batch import collate_records

    kaggle, computed, none = hms_spectrogram_records
    batch = collate_records([encode_example(r) for r in (kaggle, computed, none)])
    spectrogram = batch["spectrogram"]
    assert spectrogram.dtype == torch.float32 and spectrogram.shape == (3, 400, 25)
    # Kaggle's 300 frames keep their middle 25 ((300 - 25) // 2 = 137 on): the EEG window's own time
    np.testing.assert_array_equal(spectrogram[0].numpy(), kaggle.spectrogram[:, 137:162].astype(np.float32))
    np.testing.assert_array_equal(spectrogram[1].numpy(), computed.spectrogram.astype(np.float32))
    assert torch.isnan(spectrogram[2]).all()
    alone = collate_records([encode_example(kaggle)])["spectrogram"]
    assert alone.shape == (1, 400, 300)  # nothing to crop to
    assert "spectrogram" not in collate_records([encode_example(none)])


def test_only_a_model_with_the_spectrogram_modality_is_fed_one(hms_spectrogram_records):
    from eegfm.model.batch import collate_records
    from eegfm.model.inputs import inputs_for_modalities

    batch = collate_records([encode_example(r) for r in hms_spectrogram_records])
    assert "spectrogram" not in inputs_for_modalities(batch, ("ecg", "clinical"))
    assert inputs_for_modalities(batch, ("spectrogram",))["spectrogram"] is batch["spectrogram"]
    # fewer frames than the model pools into one token: the modality reads as absent
    assert "spectrogram" not in inputs_for_modalities(batch, ("spectrogram",), spectrogram_pool=26)
