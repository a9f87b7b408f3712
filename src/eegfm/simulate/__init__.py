"""The built-in simulator: a multi-hospital clinical EEG corpus with six-class expert votes.

``python -m eegfm.simulate --output DIR`` (console script ``eegfm-simulate``) writes
sites that differ like real hospitals (:mod:`~simulate.sites`), correlated background
EEG, the six HMS patterns at graded strengths, artifacts and auxiliary channels, expert votes
and fake patient identifiers planted in the EDF headers. Layout of OUTPUT::

    OUTPUT/
      corpus.json          seed, configuration, site profiles (no identifiers), counts, conventions
      truth.jsonl          per recording: ids, site, patient_id, sfreq, duration, line_freq,
                           reference, recorded/missing channels and labels, `montage` and its
                           `derivations` [[label, first, second]] (:mod:`~simulate.montages`;
                           `channel_labels` is empty in a bipolar montage), episodes [{class,
                           start_s, end_s, strength, hemisphere, focus, params}], background
                           `states` [{state: closed|open|drowsy|sleep, start_s, end_s}], labeled
                           windows with votes (no identifiers)
      identifiers.json     the planted fake identities per recording, with the header fields,
                           annotation texts and `search_strings` to byte-search outputs for.
                           NOT a pipeline input.
      edf/<site>/<subject code>_s<NNN>_t000.edf      --format edf|both (no identifiers in paths),
                                                     in the site's montage or --montage's
      edf/labels.csv       HMS train.csv columns + `site` + `path` (relative to edf/)
      hms/train.csv        HMS train.csv columns + `site`                 --format hms|both
      hms/train_eegs/<eeg_id>.parquet                Kaggle layout: Fp1 ... O2, EKG; float32 µV
      hms/train_spectrograms/<spectrogram_id>.parquet  `time` + LL_/RL_/LP_/RP_ 0.59..19.92 Hz

Conventions (also in corpus.json): a labeled window starts at ``eeg_label_offset_seconds`` (even)
and lasts 50 s, experts labeled its central 10 s, and it lies inside one episode. The 10-minute
spectrogram window shares its centre: ``clip(eeg_offset + 25 - 300, 0, max(0, duration - 600))``;
both parquet files of a recording share time 0. HMS parquet files hold the whole recording at
200 Hz in canonical order, rounded to 0.01 µV, NaN for channels (and ``EKG``) a site lacks.
``expert_consensus`` is the most voted class, ties to the earlier of Seizure, LPD, GPD, LRDA,
GRDA, Other. ids derive from the seed and the recording's (site, subject, session).

``eegfm-realism --against NAME=DIR[:STATE[:GLOB]]`` compares the simulated background with
real corpora (:mod:`eegfm.evaluation.realism_report`, which runs the pipeline; its terms are :mod:`~simulate.realism`).

``--pattern-realism`` measures the five patterns on rendered episodes against reference ranges
from ACNS 2021 and the seizure literature (:mod:`~simulate.pattern_realism`).

``python -m eegfm.simulate.planted`` (``eegfm-planted``) plants the same five patterns in real
recordings instead: a labeled six-class corpus on real backgrounds (:mod:`~simulate.planted`, the
planting itself in :mod:`~simulate.planting`).

The same arguments give byte-identical files (no wall-clock times; every random stream is keyed
by its purpose, :mod:`~simulate.rng`); recordings are rendered in bounded chunks.
"""

from __future__ import annotations

from eegfm.core.lazy_exports import lazy_exports

# Public names, imported lazily (PEP 562) so that `python -m eegfm.simulate --help` and
# argument errors answer without loading scipy, pandas and pyarrow.
_EXPORTS = {
    "CorpusConfig": "eegfm.simulate.corpus",
    "CorpusPlan": "eegfm.simulate.corpus",
    "generate_corpus": "eegfm.simulate.corpus",
    "plan_corpus": "eegfm.simulate.corpus",
    "CLASSES": "eegfm.simulate.sites",
    "SiteProfile": "eegfm.simulate.sites",
    "archetypes": "eegfm.simulate.sites",
    "default_sites": "eegfm.simulate.sites",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
