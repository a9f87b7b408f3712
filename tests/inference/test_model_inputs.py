"""``model_inputs`` builds from the pipeline's window records exactly the inputs that encoding them
to TFRecord bytes and decoding those with the training loader's collate gave: on real recordings
(eegmat with its ECG, spectrograms and age/sex; a Kaggle HMS parquet), for every modality."""

from __future__ import annotations

import types

import numpy as np
import pytest

from eegfm.contract.schema import encode_example
from eegfm.inference.model_inputs import model_inputs
from eegfm.model.batch import collate_records
from eegfm.model.inputs import inputs_for_modalities
from eegfm.pipelines.datasets import discover
from eegfm.pipelines.job.process import PreprocessConfig, Window, process_recording

ALL = ["spectrogram", "ecg", "clinical"]


def _records(path) -> list:
    """The pipeline's window records of one real recording, as the predictor cuts them."""
    [item], _, _ = discover([str(path)], warn_sidecars=False)
    config = PreprocessConfig()
    events = process_recording(item, b"k" * 32, config, config.config_hash())
    return [event.record for event in events if isinstance(event, Window)]


def _through_the_wire(records, modalities, pool: int) -> dict:
    batch = collate_records([encode_example(record) for record in records])
    return inputs_for_modalities(batch, modalities, spectrogram_pool=pool)


@pytest.mark.parametrize("recording", ["eegmat/Subject00_1.edf", "hms/train_eegs/*.parquet"])
@pytest.mark.parametrize(("modalities", "pool"), [([], 1), (ALL, 1), (ALL, 5), (["spectrogram"], 10_000)])
def test_model_inputs_equal_the_round_trip_through_the_wire(shared_data, recording, modalities, pool):
    records = _records(next(shared_data.glob(recording)))
    assert len(records) >= 3
    config = types.SimpleNamespace(modalities=modalities, spectrogram_pool=pool)
    for batch in (records[:3], records[-1:]):
        expected = _through_the_wire(batch, modalities, pool)
        got = model_inputs(batch, config)
        assert sorted(got) == sorted(expected)
        for name, tensor in expected.items():
            assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
            np.testing.assert_array_equal(got[name].numpy(), tensor.numpy(), err_msg=name)


def test_the_eegmat_windows_carry_every_optional_input(shared_data):
    """What the test above compares is there to compare: ECG, spectrograms, age and sex."""
    records = _records(shared_data / "eegmat" / "Subject00_1.edf")
    inputs = model_inputs(records[:2], types.SimpleNamespace(modalities=ALL, spectrogram_pool=1))
    assert {"ecg", "spectrogram", "age", "sex"} <= set(inputs)
    assert not np.isnan(inputs["ecg"].numpy()).all()
