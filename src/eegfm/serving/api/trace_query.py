"""``/v1/traces``' view parameters (montage, custom derivations, display filters, auxiliary
channels) as one FastAPI dependency: checked, and a bad one refused with a 422 naming it, before
the upload is read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request

from eegfm.contract.montages import MAX_CUSTOM, MONTAGE_KEYS
from eegfm.pipelines.signal.filters import OUTPUT_NYQUIST
from eegfm.serving.api.display_filters import NOTCHES
from eegfm.serving.api.traces import TraceView, trace_view

_FREQ = {"ge": 0, "lt": OUTPUT_NYQUIST, "allow_inf_nan": False}


def trace_view_query(
    request: Request,
    montage: Annotated[
        str, Query(description=f"one of {', '.join(MONTAGE_KEYS)}; referential is the model's own input")
    ] = "double_banana",
    derivations: Annotated[
        str,
        Query(
            max_length=40 * MAX_CUSTOM,
            description=f"montage=custom only: 1 to {MAX_CUSTOM} comma-separated 'A-B', 'A-avg' or 'A' "
            "(canonical 10-20 electrodes)",
        ),
    ] = "",
    lff: Annotated[
        float, Query(**_FREQ, description="display low-frequency filter, Hz (passband edge; 0: the pipeline's)")
    ] = 0.0,
    hff: Annotated[
        float, Query(**_FREQ, description="display high-frequency filter, Hz (passband edge; 0: the pipeline's)")
    ] = 0.0,
    notch: Annotated[
        str, Query(description=f"display mains notch: one of {', '.join(NOTCHES)} (the pipeline's own stays)")
    ] = "off",
    extra: Annotated[
        int, Query(ge=0, le=1, description="1: the recording's auxiliary channels (ECG, EOG, EMG, Resp) too")
    ] = 1,
) -> TraceView:
    """The request's view; the display filters are checked against the served predictor's pipeline
    config (its band they may only narrow)."""
    preprocess = request.app.state.service.predictor.preprocess
    return trace_view(preprocess, montage, derivations, lff, hff, notch, bool(extra))
