"""Serving fine-tuned eegfm models on raw EEG: a predictor (``inference.predictor``), the
``eegfm-predict`` command line (``serving.predict``) and an HTTP API (``serving.server``), over
PyTorch, ONNX Runtime or TensorRT (``inference.backends``)."""
