"""eegfm: an open EEG foundation-model stack.

One package per layer; a module imports only from layers below its own (docs/design.md, "Layers";
tests/test_layers.py keeps it so): core, then contract, then the stages (pipelines, model,
simulate), then metrics, training, inference, and on top evaluation and serving.
"""
