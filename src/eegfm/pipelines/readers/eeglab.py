"""EEGLAB specifics: the data file a .set names, MNE's loader made to read an empty chaninfo, the fiducials' frame."""

from __future__ import annotations

import math
import os
import posixpath

import numpy as np


def eeglab_data_file(path: str | os.PathLike) -> str | None:
    """The file name an EEGLAB .set gives for its data (``EEG.data``: ``x.fdt``), or None where the
    .set holds its data itself or cannot be read; reads only that variable."""
    import scipy.io  # heavy: only where a recording is an EEGLAB file

    value = None
    try:
        found = {name: cls for name, _, cls in scipy.io.whosmat(path)}
    except (ValueError, NotImplementedError, OSError, TypeError):  # HDF5 (v7.3), or no MATLAB file
        found = None
    try:
        if found is None:
            value = _hdf5_text(path)
        elif found.get("data") == "char":
            value = scipy.io.loadmat(path, variable_names=["data"], squeeze_me=True)["data"]
        elif "EEG" in found:
            eeg = scipy.io.loadmat(path, variable_names=["EEG"], squeeze_me=True, struct_as_record=False)["EEG"]
            value = getattr(eeg, "data", None)
    except (ValueError, NotImplementedError, OSError, TypeError, KeyError):
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
        value = value.item()
    if not isinstance(value, str) or not value.strip():
        return None
    return posixpath.basename(value.strip().replace("\\", "/"))


def _hdf5_text(path) -> str | None:
    import h5py  # optional: MATLAB 7.3 files only

    with h5py.File(path, "r") as fh:
        node = fh.get("data")
        if node is None and isinstance(fh.get("EEG"), h5py.Group):
            node = fh["EEG"].get("data")
        # MATLAB keeps a char array as uint16 codes; numbers are data, not a name
        if not isinstance(node, h5py.Dataset) or node.dtype != np.uint16 or node.size > 4096:
            return None
        return "".join(map(chr, node[()].ravel()))


def eeglab_chaninfo_guard() -> None:
    """Let MNE read an EEGLAB file whose ``EEG.chaninfo`` is an empty array (a scripted .set), on which
    ``chaninfo.get`` fails: MNE's loader is wrapped, once and for good (no lock), to read it as an empty struct."""
    from mne.io.eeglab import eeglab as module  # mne: heavy, loaded by the MNE readers only

    load = module._check_load_mat
    if getattr(load, "eegfm_guard", False):
        return

    def guarded(*args, **kwargs):
        eeg = load(*args, **kwargs)
        if not isinstance(eeg.get("chaninfo", {}), dict):
            eeg["chaninfo"] = {}
        return eeg

    guarded.eegfm_guard = True
    module._check_load_mat = guarded


def eeglab_fiducials(fiducials: dict) -> dict | None:
    """EEGLAB's nasion and ears turned into MNE's frame (x toward the right ear, y the nose) and metres,
    as MNE turns the chanlocs but not nodatchans' fiducials; their unit puts them 3 to 30 cm from the
    origin. None where the nasion then does not lie ahead (a reader turned them already)."""
    from mne.io.constants import FIFF  # mne: heavy, loaded by the MNE readers only

    norms = [math.hypot(*xyz) for xyz in fiducials.values()]
    scale = next((s for s in (1.0, 0.01, 0.001) if 0.03 < s * float(np.median(norms)) < 0.3), None)
    if scale is None:
        return None
    turned = {k: (-xyz[1] * scale, xyz[0] * scale, xyz[2] * scale) for k, xyz in fiducials.items()}
    nasion = turned[FIFF.FIFFV_POINT_NASION]
    return turned if nasion[1] > abs(nasion[0]) else None
