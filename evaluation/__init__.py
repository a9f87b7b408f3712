"""How far a fine-tuned eegfm model carries: ``evaluation.metrics`` and ``evaluation.calibration``
compute the held-out metrics of eval.json, ``evaluation.plots`` draws them; ``evaluation.loso`` holds
each site out in turn (leave-one-site-out), ``evaluation.robustness`` scores a run's held-out windows
under noise, gain changes, lost electrodes and mains interference."""
