"""The first bytes that tell apart formats sharing an extension (read by the listing and the readers)."""

# ANT Neuro's eego .cnt is a RIFF (or, past 4 GB, RF64) container; Neuroscan's starts with its version text.
ANT_MAGIC = (b"RIFF", b"RF64")
# Nihon Kohden's .EEG opens with its device and version (MNE's list: 'EEG-1100A V01.00', 'QI-403A   V02.00' ...);
# BrainVision's .eeg holds bare samples.
NIHON_KOHDEN_MAGIC = (b"EEG-", b"QI-", b"DAE-")
