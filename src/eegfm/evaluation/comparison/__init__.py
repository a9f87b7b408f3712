"""Model quality compared (``eegfm-benchmark``): eegfm's pipeline, pretraining and fine-tuning over
seeds beside simple baselines and eegfm's own ablations, on the same windows and split (``cli``
lists the suites). Speed and memory benchmarks are another thing: ``benchmarks/`` at the top."""
