"""Which MNE reader opens a recording: by extension, and by content where two formats share one."""

import importlib.util
import shutil

import numpy as np
import pytest

from eegfm.pipelines.readers import ReaderError, open_recording
from eegfm.pipelines.readers.mne_formats import resolved_format

NEUROSCAN = "formats/cnt/test_CNT_events_mne_JWoess_clipped.cnt"
ANT = "formats/ant/test_CA_208.cnt"
CURRY = "formats/curry/test_bdf_stim_channel Curry 8.cdt"


def test_a_cnt_is_told_neuroscan_or_ant_by_its_first_bytes(shared_data):
    assert resolved_format(shared_data / NEUROSCAN) == "neuroscan"
    assert resolved_format(shared_data / ANT) == "ant"  # a RIFF/RF64 container


def test_a_clipped_neuroscan_cnt_is_read_with_the_sample_width_that_gives_eeg(shared_data):
    """MNE cannot tell 16- from 32-bit samples from this clipped file's sizes; read as 16-bit its
    samples are noise (sample-to-sample change larger than their spread), as 32-bit they are EEG."""
    with open_recording(shared_data / NEUROSCAN) as reader:
        assert reader.info.ch_names == ("F8", "FCz") and reader.bad_channels == ("F8",)
        data = reader.read(0, 10_000).astype(np.float64)
        assert np.std(np.diff(data, axis=1)) < 0.5 * np.std(data)
        assert 1 < np.percentile(np.abs(data), 99) < 1000  # microvolts
        assert (35.382, 0.0, "KeyPad Response 1") in reader.events  # the text as recorded
        assert reader.bad_spans[0] == (0, 47334)  # its BAD span, 47.3 s at 1 kHz


def test_a_cnt_neither_reader_reads_names_both_formats(shared_data, tmp_path):
    broken = tmp_path / "cut.cnt"
    broken.write_bytes((shared_data / NEUROSCAN).read_bytes()[:600])  # the header cut short
    with pytest.raises(ReaderError) as err:
        open_recording(broken)
    assert "not a readable .cnt: read as Neuroscan .cnt:" in str(err.value)
    assert "and not ANT Neuro eego (it has no RIFF/RF64 header)" in str(err.value)


@pytest.mark.parametrize("rel, package", [(ANT, "antio"), (CURRY, "curryreader")])
def test_a_format_whose_package_is_missing_names_it(shared_data, rel, package):
    if importlib.util.find_spec(package) is not None:
        with open_recording(shared_data / rel) as reader:
            assert reader.info.n_times > 0
        return
    with pytest.raises(ReaderError, match=f"MNE reads it with the package {package}, which is not installed"):
        open_recording(shared_data / rel)


def test_a_brainvision_data_file_is_no_nihon_kohden_recording(shared_data):
    with pytest.raises(ReaderError, match="a .eeg without Nihon Kohden's header .* read through its .vhdr"):
        open_recording(shared_data / "formats/brainvision/test_NO.eeg")


def test_a_dat_without_curry_or_persyst_header_is_refused(shared_data, tmp_path):
    lone = tmp_path / "x.dat"
    shutil.copy(shared_data / "formats/eximia/test_eximia.nxe", lone)
    with pytest.raises(ReaderError, match="Curry 7's recording with its .dap beside it \\(none here\\)"):
        open_recording(lone)


def test_eximia_is_read_by_its_reader(shared_data):
    with open_recording(shared_data / "formats/eximia/test_eximia.nxe") as reader:
        assert reader.info.sfreq == 1450.0 and reader.info.ch_names[4:7] == ("Fp1", "Fpz", "Fp2")


def test_chanlocs_without_the_files_nasion_and_ears_place_nothing(shared_data):
    """test_raw_chanloc.set keeps no fiducials (chaninfo.nodatchans is empty); MNE stands in its own at
    the head's equator, which would tilt the cap by a row (Fz placed at FCz): its positions are not used,
    and its channels are placed by their 10-10 names."""
    with open_recording(shared_data / "formats/eeglab/test_raw_chanloc.set") as reader:
        assert reader.digitized is None
        assert reader.info.ch_names[:5] == ("Fp1", "Fp2", "F7", "F3", "Fz")
