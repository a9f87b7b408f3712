"""Explanations as ``eegfm-predict --explain`` writes them: the options and the loop over the
recordings (``explain.cli``), the JSON report (``explain.report``) and the figure (``explain.plot``);
what they show is computed in ``inference.explain``."""
