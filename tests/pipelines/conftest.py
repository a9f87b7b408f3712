"""Fixtures shared by the pipeline tests."""

import pytest


@pytest.fixture
def fails_on_second_chunk(monkeypatch) -> list:
    """Makes ``process_recording`` fail on a recording's second batch of windows, after the first
    went out, as a library that breaks part-way through a file would; the list counts the batches."""
    from eegfm.pipelines.signal import windowing

    made, calls = windowing._make_windows, []

    def fails_the_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a library broke on this chunk")
        yield from made(*args)

    monkeypatch.setattr(windowing, "_make_windows", fails_the_second_time)
    return calls


def write_edf_plus_d(source, out, onsets, first: int = 0) -> None:
    """``source``'s data records ``first`` ... as an EDF+D whose k-th record starts at
    ``onsets[k]`` s, written by hand (the test does not trust our own EDF writer): the time-keeping
    TAL goes into ``source``'s 'EDF Annotations' signal, or into one appended for it."""
    raw = open(source, "rb").read()
    ns = int(raw[252:256])
    header_bytes = 256 * (ns + 1)
    labels = [raw[256 + i * 16 : 256 + (i + 1) * 16].decode().strip() for i in range(ns)]
    spr = [int(raw[256 + ns * 216 + i * 8 : 256 + ns * 216 + (i + 1) * 8]) for i in range(ns)]
    record = 2 * sum(spr)

    def field(value, width):
        return str(value).ljust(width).encode("ascii")

    if "EDF Annotations" in labels:
        ann = labels.index("EDF Annotations")
        tal_at, tal_bytes, new = 2 * sum(spr[:ann]), 2 * spr[ann], ns
        signals = raw[256:header_bytes]
    else:
        tal_at, tal_bytes, new = record, 60, ns + 1
        signals, offset = b"", 256
        for width, value in [
            (16, "EDF Annotations"),
            (80, ""),
            (8, ""),
            (8, -1),
            (8, 1),
            (8, -32768),
            (8, 32767),
            (80, ""),
            (8, tal_bytes // 2),
            (32, ""),
        ]:
            signals += raw[offset : offset + ns * width] + field(value, width)
            offset += ns * width
    head = raw[:184] + field(256 * (new + 1), 8) + field("EDF+D", 44) + field(len(onsets), 8) + raw[244:252]
    body = bytearray()
    for k, onset in enumerate(onsets):
        at = header_bytes + (first + k) * record
        rec = bytearray(raw[at : at + record].ljust(tal_at + tal_bytes, b"\0"))
        rec[tal_at : tal_at + tal_bytes] = f"+{onset:g}\x14\x14".encode("ascii").ljust(tal_bytes, b"\0")
        body += rec
    with open(out, "wb") as fh:
        fh.write(head + field(new, 4) + signals + bytes(body))


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("key") / "pseudonym.key"
    path.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    return str(path)


@pytest.fixture(scope="session")
def shared_run(shared_data, key_file, tmp_path_factory):
    """The job over all of ../shared/data (in_memory): its output folder and manifest."""
    from eegfm.pipelines.job.preprocess import run

    out = tmp_path_factory.mktemp("shared-run")
    manifest = run(
        [
            "--input",
            str(shared_data),
            "--output",
            str(out),
            "--pseudonym_key_file",
            key_file,
            "--runner",
            "DirectRunner",
            "--direct_running_mode",
            "in_memory",
            "--keep_paths",  # the tests find inputs by name; redaction has its own (test_redact.py)
        ]
    )
    return out, manifest
