"""A folder of eegmat recordings as a clinic might export them: the patient's name, record number
and birth date in the file names and typed into channel labels (the header's label fields patched)."""

from __future__ import annotations

from pathlib import Path

IDENTIFIER = "DOE_JOHN_MRN1234567_1960-01-01"
NEEDLES = (b"DOE", b"JOHN", b"MRN1234567", b"1960")


def _patched(raw: bytes, labels: dict[int, str], physical_min: dict[int, str] = {}) -> bytes:  # noqa: B006
    ns = int(raw[252:256])
    out = bytearray(raw)
    for i, label in labels.items():
        out[256 + 16 * i : 256 + 16 * (i + 1)] = label.ljust(16).encode("ascii")
    for i, value in physical_min.items():  # the field after label (16), transducer (80) and unit (8)
        at = 256 + ns * 104 + 8 * i
        out[at : at + 8] = value.ljust(8).encode("ascii")
    return bytes(out)


def write_named_ward(shared_data: Path, folder: Path) -> Path:
    """``folder`` with a processed recording whose spare channels are labelled with the identifier's
    parts, one quarantined at harmonization (its labels listed in the reason), one whose header
    fails to parse at a labelled signal, and a plain eegmat recording."""
    eegmat = shared_data / "eegmat"
    folder.mkdir(parents=True)
    parts = {19: "DOE_JOHN", 20: "MRN1234567_1960"}  # in place of 'EEG A2-A1' and 'ECG ECG'
    (folder / f"{IDENTIFIER}.edf").write_bytes(_patched((eegmat / "Subject03_2.edf").read_bytes(), parts))
    few = {0: "DOE_JOHN", 1: "MRN1234567_1960", **{i: f"Z{i}" for i in range(2, 11)}}  # 8 of the 19 left
    (folder / f"{IDENTIFIER}_b.edf").write_bytes(_patched((eegmat / "Subject04_2.edf").read_bytes(), few))
    broken = _patched((eegmat / "Subject05_2.edf").read_bytes(), {0: "DOE_JOHN"}, {0: "abc"})
    (folder / f"{IDENTIFIER}_c.edf").write_bytes(broken)
    (folder / "Subject06_2.edf").symlink_to(eegmat / "Subject06_2.edf")
    return folder


# Compressed signal and pixels could spell three letters by chance: only their names are searched.
_BINARY = (".tfrecord", ".png", ".gz", ".npz", ".safetensors")


def leaks(out: Path, *texts: str) -> list[tuple[str, str]]:
    """The identifier parts found in any file below ``out`` (by name, and content where it is text) or in ``texts``."""
    haystacks = {
        str(p): p.name.encode() + (b"" if p.name.endswith(_BINARY) else b"\n" + p.read_bytes())
        for p in out.rglob("*")
        if p.is_file()
    }
    haystacks.update({f"text {k}": t.encode() for k, t in enumerate(texts)})
    return [(name, n.decode()) for name, blob in haystacks.items() for n in NEEDLES if n in blob]
