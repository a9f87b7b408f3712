"""How large the job lets a decompressed input and an output shard grow unless told otherwise: one
definition for the options that set the limits and the code that applies them.

Light on purpose: the command line states these defaults without loading Beam or the readers.
"""

from __future__ import annotations

# How far a gzipped EDF/BDF may expand while it is decompressed to a temporary file (pipelines.readers.local_copy):
# EEG compresses 2-4x, so 50x is no recording; 20 GB is 43 h of 64 channels at 1 kHz in EDF.
DEFAULT_MAX_DECOMPRESSED_RATIO = 50.0
DEFAULT_MAX_DECOMPRESSED_GB = 20.0
# About 1,350 ten-second windows (3.7 EEG-hours): over the 100 MB TensorFlow recommends for object
# stores, yet a corpus of a few dozen EEG-hours still gives every loader worker files of its own.
DEFAULT_MAX_SHARD_BYTES = 128 * 2**20
