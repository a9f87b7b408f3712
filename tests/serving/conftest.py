"""One torch thread, as in the evaluation tests; the fine-tuned run served (``finetuned``) and its
raw recordings (``raw_sites``) are in ``tests/conftest.py``, the model folders ``hms6_run`` and
``fused_export`` and ``validate_prediction`` in ``tests/inference/conftest.py``."""

from __future__ import annotations

import pytest

from tests.inference.conftest import PRIOR, fused_export, hms6_run, validate_prediction  # noqa: F401 - shared


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every serving test runs in-process with one intra-op thread (``tests/conftest.py``)."""


@pytest.fixture(scope="module")
def server(finetuned, tmp_path_factory):
    """``finetuned`` served in this process with the test API key in a keys file; a test module
    that needs other options (an upload cap, no auth) defines its own ``server``."""
    from tests.serving.serve_helpers import API_KEY, serving

    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(API_KEY + "\n")
    with serving(["--model", str(finetuned), "--api_keys_file", str(keys)]) as running:
        yield running
