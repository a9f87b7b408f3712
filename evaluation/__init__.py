"""How far a fine-tuned eegfm model carries: ``evaluation.loso`` holds each site out in turn
(leave-one-site-out) and reports its test metrics beside the class prior's;
``evaluation.robustness`` scores a run's held-out windows under noise, gain changes, lost
electrodes and mains interference."""
