"""Damaged copies of every real file of ../shared/data/formats (cut in half, cut to 1 KB, header bytes
overwritten): each is read or refused with a ReaderError naming the file, never another exception,
so one damaged recording is quarantined with a reason and the run goes on."""

import shutil
from pathlib import Path

import pytest

from eegfm.pipelines.readers import open_recording
from eegfm.pipelines.readers.base import ReaderError

RECORDINGS = ("cnt", "bdf", "vhdr", "cdt", "edf", "set", "nxe", "fif")  # the files a recording opens by
DAMAGES = {
    "half": lambda data: data[: len(data) // 2],
    "first 1 KB": lambda data: data[:1024],
    "header overwritten": lambda data: data[:8] + b"\xff" * 248 + data[256:],
}


def _recordings(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower().lstrip(".") in RECORDINGS)


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_of_any_format_is_read_or_refused_naming_it(shared_data, tmp_path, damage, one_thread):
    recordings = _recordings(shared_data / "formats")
    assert len(recordings) >= 13
    outcomes = {}
    for original in recordings:
        copy_folder = tmp_path / original.parent.name
        shutil.copytree(original.parent, copy_folder)  # companions (.eeg, .fdt, .dpa ...) stay intact
        damaged = copy_folder / original.name
        damaged.write_bytes(DAMAGES[damage](original.read_bytes()))
        try:
            with open_recording(damaged) as reader:
                samples = reader.read()
            outcomes[original.name] = f"read {samples.shape}"
        except ReaderError as err:
            assert original.name in str(err), err
            outcomes[original.name] = "refused"
        shutil.rmtree(copy_folder)
    # most damaged files are refused; a format without a length field (eXimia) reads what is left
    assert sum(outcome == "refused" for outcome in outcomes.values()) >= len(recordings) - 3, outcomes
