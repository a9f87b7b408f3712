"""One torch thread, as in the evaluation tests; the fine-tuned run served (``finetuned``) and its
raw recordings (``raw_sites``) are in ``tests/conftest.py``."""

from __future__ import annotations

from tests.evaluation.conftest import one_thread  # noqa: F401 - one torch thread here too (autouse)
