"""Input discovery and dataset adapters: `--input` patterns -> one `SourceItem` per input file.

Each corpus module (hms, bids, physionet, tuh, generic) registers its adapter (``adapters.register``);
``discovery.discover`` lists the inputs and hands each data set folder to its adapter.
"""

from eegfm.pipelines.datasets.adapters import named_in_reason
from eegfm.pipelines.datasets.discovery import DATASETS, discover
from eegfm.pipelines.datasets.items import (
    RECORDING_EXTENSIONS,
    Ignored,
    LabeledInterval,
    LabeledWindow,
    SourceItem,
    as_background,
    interval_label,
)
from eegfm.pipelines.datasets.listing import expand_inputs

__all__ = [
    "DATASETS",
    "RECORDING_EXTENSIONS",
    "Ignored",
    "LabeledInterval",
    "LabeledWindow",
    "SourceItem",
    "as_background",
    "discover",
    "expand_inputs",
    "interval_label",
    "named_in_reason",
]
