"""eegfm preprocessing: raw EEG from any corpus to snappy TFRecords, a manifest and a quarantine.

The Beam job is ``eegfm.pipelines.job.preprocess``; ``schema`` owns the TFRecord contract, ``channels``
the channel vocabulary and ``simulate`` the built-in multi-site corpus.
"""
