"""How far a fine-tuned eegfm model carries: ``evaluation.loso`` holds each site out in turn
(leave-one-site-out), ``evaluation.robustness`` scores a run's held-out windows under noise, gain
changes, lost electrodes and mains interference, ``evaluation.comparison`` compares eegfm with
baselines on one command and ``evaluation.report`` gathers every stage's outputs into one report.
The metrics they compute live in ``eegfm.metrics``."""
