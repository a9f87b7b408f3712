"""The back-ends a model runs on, by name: apart from ``inference.backends`` (torch) so that a command's
--help lists them without importing torch."""

BACKENDS = ("torch", "onnx", "onnx-int8", "tensorrt")
