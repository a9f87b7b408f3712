"""``python -m eegfm.pipelines.simulate``: see :mod:`pipelines.simulate.cli`."""

import sys

from eegfm.pipelines.simulate.cli import main

sys.exit(main())
