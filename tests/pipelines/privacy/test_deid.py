import datetime as dt
import os
import stat

import pytest

from eegfm.pipelines.privacy.deid import (
    ClinicalInfo,
    PseudonymKeyError,
    age_from_dates,
    create_key,
    load_key,
    normalize_sex,
    pseudonym,
    safe_age,
    warn_if_shared,
)


def test_pseudonyms_are_stable_keyed_and_domain_separated(tmp_path):
    key_path = tmp_path / "key"
    key = create_key(key_path)
    assert load_key(key_path) == key
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    a = pseudonym(key, "subject", "MRN-4482913")
    assert a == pseudonym(load_key(key_path), "subject", "MRN-4482913")  # stable across runs
    assert a.startswith("sub-") and len(a) == len("sub-") + 16
    assert "4482913" not in a
    assert a != pseudonym(key, "recording", "MRN-4482913")  # kinds never collide
    assert a != pseudonym(b"another-secret-key-0000", "subject", "MRN-4482913")
    with pytest.raises(FileExistsError):
        create_key(key_path)


def test_bad_keys_and_kinds_are_refused(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"abc\n")
    with pytest.raises(
        PseudonymKeyError, match=r"--pseudonym_key_file .*short: expected at least 16 bytes of secret; got 3"
    ):
        load_key(short)
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        load_key(tmp_path / "absent")
    with pytest.raises(ValueError, match=r"kind: expected one of site, subject, session, recording; got 'patient'"):
        pseudonym(b"k" * 16, "patient", "x")


def test_a_key_file_others_can_read_is_named_in_a_warning(tmp_path, caplog):
    created = tmp_path / "created.key"
    create_key(created)
    shared = tmp_path / "shared.key"
    shared.write_bytes(created.read_bytes())
    shared.chmod(0o644)
    with caplog.at_level("WARNING", logger="eegfm.deid"):
        warn_if_shared(created)  # create_key writes it 0600
        assert not caplog.records
        warn_if_shared(shared)
    assert [r.getMessage() for r in caplog.records] == [
        f"--pseudonym_key_file {shared}: readable or writable by others (mode 0644); only its owner should read "
        f"it: chmod 600 {shared}"
    ]


def test_age_is_whole_years_capped_and_dates_do_not_leave():
    assert age_from_dates(dt.date(1957, 3, 14), dt.date(2024, 3, 13)) == 66.0
    assert age_from_dates(dt.date(1957, 3, 14), dt.date(2024, 3, 14)) == 67.0
    assert age_from_dates(dt.date(1920, 1, 1), dt.date(2024, 1, 1)) == 90.0
    assert age_from_dates(None, dt.date(2024, 1, 1)) is None
    assert safe_age(-3) is None and safe_age(200) is None and safe_age(34.9) == 34.0
    assert [normalize_sex(v) for v in ("F", "female", 2, "M", "Male", 1, "X", None)] == [
        "F",
        "F",
        "F",
        "M",
        "M",
        "M",
        "",
        "",
    ]
    with pytest.raises(ValueError, match=r"age: expected 0..90 years"):
        ClinicalInfo(age=95)
    with pytest.raises(ValueError, match=r"sex: expected 'F', 'M' or ''"):
        ClinicalInfo(sex="female")
