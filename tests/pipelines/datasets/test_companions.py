"""A recording's files beside its own are listed as its parts, not quarantined as recordings."""

from eegfm.pipelines.datasets.adapters import split_recordings


def _split(files):
    recordings, ignored = split_recordings(files)
    return recordings, {g.path: g.reason for g in ignored}


def test_nihon_kohden_persyst_curry_and_ant_parts_go_with_their_recording():
    files = [
        "/d/nk/DA001.EEG",
        "/d/nk/DA001.21E",
        "/d/nk/DA001.PNT",
        "/d/nk/DA001.LOG",
        "/d/persyst/p.lay",
        "/d/persyst/p.dat",
        "/d/curry7/c.dat",
        "/d/curry7/c.dap",
        "/d/curry7/c.rs3",
        "/d/curry8/r 8.cdt",
        "/d/curry8/r 8.cdt.dpa",
        "/d/curry8/r 8.cdt.cef",
        "/d/ant/a.cnt",
        "/d/ant/a.evt",
        "/d/bv/b.vhdr",
        "/d/bv/b.eeg",
    ]
    recordings, reasons = _split(files)
    assert sorted(recordings) == sorted(
        ["/d/nk/DA001.EEG", "/d/persyst/p.lay", "/d/curry7/c.dat", "/d/curry8/r 8.cdt", "/d/ant/a.cnt", "/d/bv/b.vhdr"]
    )
    assert reasons["/d/nk/DA001.21E"] == "Nihon Kohden part of the recording DA001.EEG (.21e), read with it"
    assert reasons["/d/nk/DA001.LOG"] == "Nihon Kohden part of the recording DA001.EEG (.log), read with it"
    assert reasons["/d/persyst/p.dat"] == "Persyst data of p.lay (.dat), read through it"
    assert reasons["/d/curry7/c.rs3"] == "Curry part of the recording c.dat (.rs3), read with it"
    assert reasons["/d/curry8/r 8.cdt.dpa"] == "Curry part of the recording r 8.cdt (.cdt.dpa), read with it"
    assert reasons["/d/ant/a.evt"] == "ANT Neuro part of the recording a.cnt (.evt), read with it"
    assert reasons["/d/bv/b.eeg"] == "BrainVision data of b.vhdr (.eeg), read through it"


def test_a_lone_eeg_is_a_nihon_kohden_recording_by_its_header_bytes(tmp_path):
    nihon, other = tmp_path / "N.EEG", tmp_path / "o.eeg"
    nihon.write_bytes(b"EEG-1200A V01.00" + bytes(100))
    other.write_bytes(bytes(116))
    recordings, reasons = _split([str(nihon), str(other)])
    assert recordings == [str(nihon)]
    assert reasons[str(other)] == "data part of another recording (.eeg), read through its header file"


def test_a_lone_dat_is_a_part_whose_header_is_missing():
    recordings, reasons = _split(["/d/x.dat"])
    assert recordings == []
    assert "read through its header file (.lay or .dap): none beside it" in reasons["/d/x.dat"]
