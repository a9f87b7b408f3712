"""``python -m eegfm.simulate``: the simulator's corpora (see :mod:`simulate.cli`); the realism
report is ``eegfm-simulate``'s."""

import sys

from eegfm.simulate.cli import run

sys.exit(run())
