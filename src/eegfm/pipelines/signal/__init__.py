"""Signal processing on one recording: harmonization to 10-20, filters, line noise, ICA, windows and
what each window carries (spectrograms, features)."""
