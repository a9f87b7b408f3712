"""The built-in simulator: a multi-hospital clinical EEG corpus with six-class expert votes.

``python -m eegfm.pipelines.simulate --output DIR`` (console script ``eegfm-simulate``) writes a corpus
that exercises every later stage honestly: several sites that differ like real hospitals do
(:mod:`~pipelines.simulate.sites`), spatially correlated background EEG
(:mod:`~pipelines.simulate.background`), the six HMS patterns at graded strengths
(:mod:`~pipelines.simulate.patterns`), artifacts and auxiliary channels
(:mod:`~pipelines.simulate.artifacts`), expert votes (:mod:`~pipelines.simulate.votes`) and fake
patient identifiers planted in the EDF headers (:mod:`~pipelines.simulate.identities`).

Layout of OUTPUT::

    OUTPUT/
      corpus.json          seed, configuration, site profiles (no identifiers), counts, conventions
      truth.jsonl          one line per recording: eeg_id, spectrogram_id, site, patient_id,
                           sfreq, duration, line_freq, reference, recorded/missing channels,
                           channel labels, episodes [{class, start_s, end_s, strength,
                           hemisphere, focus, params}], labeled windows with votes (no identifiers)
      identifiers.json     the planted fake identities per recording (names, birth date in every
                           format used, MRN, technician, the header fields and annotation texts,
                           and `search_strings` to byte-search outputs for). NOT a pipeline input.
      edf/<site>/<subject code>_s<NNN>_t000.edf      --format edf|both (no identifiers in paths)
      edf/labels.csv       HMS train.csv columns + `site` + `path` (relative to edf/)
      hms/train.csv        HMS train.csv columns + `site`                 --format hms|both
      hms/train_eegs/<eeg_id>.parquet                Kaggle layout: Fp1 ... O2, EKG; float32 µV
      hms/train_spectrograms/<spectrogram_id>.parquet  `time` + LL_/RL_/LP_/RP_ 0.59..19.92 Hz

Conventions (also recorded in corpus.json):

- A labeled window starts at ``eeg_label_offset_seconds`` (an even number of seconds) and lasts
  50 s; experts labeled its central 10 s. Every window lies inside one episode.
- The spectrogram window lasts 10 minutes and shares its centre with the EEG window:
  ``spectrogram_label_offset_seconds = clip(eeg_offset + 25 - 300, 0, max(0, duration - 600))``.
  The EEG and spectrogram parquet files of a recording share time 0.
- HMS parquet files hold the whole recording resampled to 200 Hz in the canonical channel
  order (what Kaggle ships); channels a site does not record are NaN, and so is ``EKG`` at sites
  without an ECG lead. Values are rounded to 0.01 µV like the real files.
- ``expert_consensus`` is the class with most votes, ties going to the earlier class in
  Seizure, LPD, GPD, LRDA, GRDA, Other.
- ids (eeg_id, spectrogram_id, patient_id, label_id) are deterministic integers derived from
  the seed and the recording's position (site, subject, session), not from generation order.

Determinism: the same arguments give byte-identical files (no wall-clock times anywhere in
the corpus); every random stream is keyed by what it is for (:mod:`~pipelines.simulate.rng`).
Memory is bounded: recordings are rendered and written in chunks (``--chunk-seconds``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names, imported lazily (PEP 562) so that `python -m eegfm.pipelines.simulate --help` and
# argument errors answer without loading scipy, pandas and pyarrow.
_EXPORTS = {
    "CorpusConfig": "eegfm.pipelines.simulate.corpus",
    "CorpusPlan": "eegfm.pipelines.simulate.corpus",
    "generate_corpus": "eegfm.pipelines.simulate.corpus",
    "plan_corpus": "eegfm.pipelines.simulate.corpus",
    "CLASSES": "eegfm.pipelines.simulate.sites",
    "SiteProfile": "eegfm.pipelines.simulate.sites",
    "archetypes": "eegfm.pipelines.simulate.sites",
    "default_sites": "eegfm.pipelines.simulate.sites",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eegfm.pipelines.simulate' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
