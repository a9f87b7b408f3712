"""One-command benchmarks: eegfm's pipeline, pretraining and fine-tuning over seeds beside simple
baselines and eegfm's own ablations, on the same windows and split (``cli`` lists the suites)."""
