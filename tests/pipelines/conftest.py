"""Fixtures shared by the pipeline tests."""

import pytest


@pytest.fixture
def fails_on_second_chunk(monkeypatch) -> list:
    """Makes ``process_recording`` fail on a recording's second batch of windows, after the first
    went out, as a library that breaks part-way through a file would; the list counts the batches."""
    from pipelines import process

    made, calls = process._make_windows, []

    def fails_the_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a library broke on this chunk")
        yield from made(*args)

    monkeypatch.setattr(process, "_make_windows", fails_the_second_time)
    return calls


@pytest.fixture(scope="session")
def split_fif(shared_data, tmp_path_factory):
    """One real recording (eegmat Subject00_1, its 19 10-20 channels, first 60 s) as MNE saves
    it split into parts (``split/rest_raw.fif``, ``rest_raw-1.fif`` ...) and whole
    (``whole/rest_raw.fif``); the root folder."""
    import mne

    root = tmp_path_factory.mktemp("fif")
    raw = mne.io.read_raw_edf(shared_data / "eegmat" / "Subject00_1.edf", preload=True, verbose="error")
    raw.pick([name for name in raw.ch_names if name.startswith("EEG ") and name != "EEG A2-A1"]).crop(0, 60)
    for folder, split in (("split", 1_850_000), ("whole", "2GB")):
        (root / folder).mkdir()
        raw.save(root / folder / "rest_raw.fif", split_size=split, verbose="error")
    assert len(list((root / "split").iterdir())) >= 3
    return root
