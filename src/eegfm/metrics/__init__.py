"""What fine-tuning, evaluation and serving all read: the soft-label losses and divergences
(``losses``), held-out classification metrics against the class prior (``classification``),
calibration (``calibration``), per-window uncertainty (``uncertainty``), selective prediction
(``selective``) and the plots of them (``plots``). It imports only the layers below it.
"""
