"""``python -m eegfm.simulate``: ``eegfm-simulate``, the simulator's corpora (see :mod:`simulate.cli`);
the realism report is ``eegfm-realism``'s."""

import sys

from eegfm.simulate.cli import main

sys.exit(main())
