"""Running a fine-tuned model on raw EEG, below the commands that do it: the predictor
(``inference.predictor``: the pipeline's windows, then the model), the backends it runs the model on
(``inference.backends``: PyTorch, ONNX Runtime, TensorRT; ``inference.fused_backend`` for a benchmark
row), the windows as model inputs (``inference.model_inputs``), the clinical reading of its outputs
(``inference.clinical``, ``inference.recommendation`` with its rule table ``recommendation.yaml``),
the timeline figure, the explanations' computation (``inference.explain``) and the model store a
model is fetched from and published to (``inference.model_store``, ``inference.model_versions``).
Evaluation and serving (the commands and the HTTP API) build on it."""
