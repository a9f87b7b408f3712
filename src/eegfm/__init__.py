"""eegfm: an open EEG foundation-model stack.

One package per layer; a module imports only from layers below its own (docs/design.md, "Layers";
tests/test_layers.py keeps it so): core, then contract, then the stages (pipelines, model,
simulate), then metrics, training, inference, and on top evaluation and serving.
"""

from eegfm.core.threads import sleep_while_waiting

# Before any eegfm module imports torch, numpy or onnxruntime: their OpenMP runtimes read the
# wait policy once, when they load (core/threads.py). A variable the user set is kept.
sleep_while_waiting()
