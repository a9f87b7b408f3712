"""Input discovery and dataset adapters: `--input` patterns -> one `SourceItem` per input file.

Each corpus module (hms, bids, physionet, tuh, generic) registers its adapter (``adapters.register``);
``discovery.discover`` lists the inputs and hands each data set folder to its adapter.
"""

from __future__ import annotations

from eegfm.core.lazy_exports import lazy_exports

# Public names, imported lazily (PEP 562): a command line takes ``DATASETS`` (``names``) without
# loading the adapters, their readers and Beam's file systems, so --help answers at once.
_EXPORTS = {
    "named_in_reason": "eegfm.pipelines.datasets.adapters",
    "discover": "eegfm.pipelines.datasets.discovery",
    "RECORDING_EXTENSIONS": "eegfm.pipelines.datasets.items",
    "Ignored": "eegfm.pipelines.datasets.items",
    "LabeledInterval": "eegfm.pipelines.datasets.items",
    "LabeledWindow": "eegfm.pipelines.datasets.items",
    "SourceItem": "eegfm.pipelines.datasets.items",
    "as_background": "eegfm.pipelines.datasets.items",
    "interval_label": "eegfm.pipelines.datasets.items",
    "expand_inputs": "eegfm.pipelines.datasets.listing",
    "DATASETS": "eegfm.pipelines.datasets.names",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
