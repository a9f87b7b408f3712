"""``python -m eegfm.simulate``: see :mod:`simulate.cli`."""

import sys

from eegfm.simulate.cli import main

sys.exit(main())
