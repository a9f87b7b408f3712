"""eegfm training package (see the README's roadmap for what lands here)."""
