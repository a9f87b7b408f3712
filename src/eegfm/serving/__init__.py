"""Serving fine-tuned eegfm models on raw EEG, over ``eegfm.inference`` (the predictor and its
backends): the ``eegfm-predict`` command line (``serving.predict``, its outputs in
``serving.predict_outputs`` and ``serving.recording_table``, ``--explain`` in ``serving.explain``),
the HTTP API (``serving.server``, ``serving.api``), ``eegfm-quantize`` (``serving.quantize``) and
``eegfm-models`` (``serving.models``)."""
