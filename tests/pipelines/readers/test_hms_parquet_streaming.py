"""HMS parquet reading: a batch at a time whatever the file's length, and numeric EEG columns only."""

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eegfm.pipelines.readers import ReaderError, open_recording
from eegfm.pipelines.readers.hms_parquet import BATCH_ROWS, HMS_EEG_COLUMNS

COLUMNS = (*HMS_EEG_COLUMNS, "EKG")


def _write(path, columns: dict, row_group_size: int) -> None:
    pq.write_table(pa.table(columns), path, compression="zstd", row_group_size=row_group_size)


@pytest.fixture(scope="module")
def long_constant_parquet(tmp_path_factory):
    """4 M rows (5.5 h at 200 Hz) of constant columns in one row group: under 1 MB on disk, 320 MB as float32."""
    path = tmp_path_factory.mktemp("long") / "long.parquet"
    n = 4_000_000
    column = pa.array(np.full(n, 12.5, dtype=np.float32))
    _write(path, {c: column for c in COLUMNS}, row_group_size=n)
    return path


def test_a_long_parquet_is_read_in_bounded_memory(long_constant_parquet):
    # Its own process: the RSS peak is the reader's alone. Probes spread over the file, then a pass
    # in 5-minute chunks, as the pipeline reads a recording.
    child = textwrap.dedent(
        f"""
        from eegfm.pipelines.readers import open_recording
        reader = open_recording({str(long_constant_parquet)!r})
        n = reader.info.n_times
        for start in range(0, n, n // 8):
            assert (reader.read(start, min(n, start + 400)) == 12.5).all()
        for start in range(0, n, 60_000):
            assert (reader.read(start, min(n, start + 60_000)) == 12.5).all()
        # VmHWM, not getrusage's ru_maxrss: the latter keeps the forking parent's peak across exec.
        peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print(n, peak_kib // 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    n_times, peak_mib = map(int, done.stdout.split())
    assert n_times == 4_000_000
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB reading a 4 M-row parquet"


def test_any_sample_range_reads_the_rows_the_file_holds(tmp_path):
    rng = np.random.default_rng(0)
    n = 3 * BATCH_ROWS + 1234
    data = {c: rng.normal(0, 50, n).astype(np.float32) for c in COLUMNS}
    data["Fz"][1000:2000] = np.nan  # a stretch without signal stays NaN
    data["Pz"] = np.full(n, np.nan, dtype=np.float32)  # never recorded: left out
    path = tmp_path / "random.parquet"
    _write(path, data, row_group_size=BATCH_ROWS + 777)  # row groups that straddle batches
    with open_recording(path) as reader:
        assert reader.empty_columns == ("Pz",) and "Pz" not in reader.info.ch_names
        assert reader.info.n_times == n
        expected = np.stack([data[c] for c in reader.info.ch_names])
        # forwards, backwards, across row groups and batches, empty, the very end
        for start, stop in [
            (0, 10),
            (BATCH_ROWS - 5, BATCH_ROWS + 5),
            (5, 7),
            (n - 3, n),
            (150_000, 197_000),
            (0, 0),
            (n, n),
        ]:
            got = reader.read(start, stop, check_finite=False)
            np.testing.assert_array_equal(got, expected[:, start:stop])
        np.testing.assert_array_equal(reader.read(check_finite=False), expected)


def test_integer_columns_read_and_a_null_typed_column_is_one_not_recorded(tmp_path):
    n = 1000
    data = {c: pa.array(np.arange(n, dtype=np.int16)) for c in COLUMNS}
    data["O2"] = pa.nulls(n)  # what pandas writes for a column of None
    path = tmp_path / "ints.parquet"
    _write(path, data, row_group_size=n)
    with open_recording(path) as reader:
        assert reader.empty_columns == ("O2",)
        np.testing.assert_array_equal(reader.read(10, 13)[0], [10.0, 11.0, 12.0])


@pytest.mark.parametrize(
    "values, kind",
    [
        (pa.array(np.arange(500) % 2 == 0), "bool"),
        (pa.array(np.arange(500).astype("datetime64[ms]")), "timestamp[ms]"),
        (pa.array([f"{v:.1f}" for v in range(500)]), "string"),
    ],
)
def test_a_non_numeric_eeg_column_fails_at_open_naming_the_column_and_its_type(tmp_path, values, kind):
    data = {c: pa.array(np.zeros(500, dtype=np.float32)) for c in COLUMNS}
    data["Cz"] = values
    path = tmp_path / "typed.parquet"
    _write(path, data, row_group_size=500)
    with pytest.raises(ReaderError) as caught:
        open_recording(path)
    assert str(caught.value) == (
        f"typed.parquet: column Cz: expected numbers (an integer or floating-point type); got type {kind}"
    )


def test_the_columns_a_missing_column_error_lists_go_with_it_for_redaction(shared_data, tmp_path):
    """A column an export named after the patient, in place of Fp1: the error lists the columns found
    and carries them as its labels, which redaction replaces by tokens where they are no channel's."""
    from eegfm.pipelines.privacy.redact import PathRedactor

    table = pq.read_table(shared_data / "hms" / "train_eegs" / "1000913311.parquet")
    path = tmp_path / "named.parquet"
    pq.write_table(table.rename_columns(["DOE_JOHN_MRN1234567" if n == "Fp1" else n for n in table.column_names]), path)
    with pytest.raises(ReaderError) as caught:
        open_recording(path)
    assert "missing Fp1 (found DOE_JOHN_MRN1234567, F3," in str(caught.value)
    assert caught.value.labels == ("DOE_JOHN_MRN1234567", *table.column_names[1:])
    redactor = PathRedactor(b"k" * 32)
    scrubbed = redactor.scrubber([str(path)], caught.value.labels)(str(caught.value))
    assert "DOE_JOHN" not in scrubbed and "MRN1234567" not in scrubbed
    assert f"(found {redactor.label('DOE_JOHN_MRN1234567')}, F3, C3," in scrubbed
