"""The server's log never names an upload: paths into an upload's temporary folder are scrubbed
from messages and tracebacks, whoever logs them; a fault is logged by type and code only."""

from __future__ import annotations

import logging

from eegfm.serving.api.logged import UploadPathFilter, fault, scrub_upload_paths

UPLOAD = "/tmp/eegfm-upload-k3j2/upload/files/Smith^John 19600101/DOE_JOHN_MRN1234567.edf"


def test_a_path_into_an_upload_is_replaced_wherever_it_stands():
    assert scrub_upload_paths(f"unexpected failure on {UPLOAD}") == "unexpected failure on <upload>"
    quoted = f"[Errno 2] No such file or directory: '{UPLOAD}' (while reading)"
    assert scrub_upload_paths(quoted) == "[Errno 2] No such file or directory: '<upload>' (while reading)"
    assert scrub_upload_paths("GET /health 200") == "GET /health 200"


def test_records_with_an_upload_path_are_rewritten_and_others_left_alone():
    upload_filter = UploadPathFilter()
    try:
        raise OSError(f"cannot open {UPLOAD}")
    except OSError as err:
        record = logging.LogRecord(
            "eegfm.x", logging.ERROR, __file__, 1, "failed on %s", (UPLOAD,), (OSError, err, None)
        )
    assert upload_filter.filter(record)
    assert "DOE" not in record.getMessage() and "Smith" not in record.getMessage() and record.exc_info is None
    assert "OSError: cannot open <upload>" in record.getMessage()
    plain = logging.LogRecord("eegfm.x", logging.INFO, __file__, 1, "served %d", (3,), None)
    assert upload_filter.filter(plain) and plain.args == (3,)  # untouched: other filters still see it


def test_a_fault_is_its_type_and_code_never_its_message():
    try:
        raise RuntimeError(f"while reading {UPLOAD}")
    except RuntimeError as err:
        said = fault(err)
    assert said.startswith("RuntimeError at ") and "test_logged.py" in said and "DOE" not in said
