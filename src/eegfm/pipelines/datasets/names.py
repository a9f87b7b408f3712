"""The data sets ``--dataset`` names, in the order ``auto`` tries their adapters.

Apart from the adapters (``adapters.register``) so that a command line lists them without loading
the adapters, their readers and Beam's file systems.
"""

from __future__ import annotations

# Detection order: the first adapter whose ``detect`` accepts a group's files lists them; ``edf``
# (any folder of recordings) is never detected, only asked for or fallen back on.
ADAPTER_NAMES: tuple[str, ...] = (
    "edf",
    "hms",
    "bids",
    "eegmat",
    "eegmmi",
    "tuab",
    "tuep",
    "tusz",
    "tuev",
    "tuar",
    "chbmit",
    "siena",
)
DATASETS: tuple[str, ...] = ("auto", *ADAPTER_NAMES)
