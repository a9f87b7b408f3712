"""``python -m pipelines.simulate``: see :mod:`pipelines.simulate.cli`."""

import sys

from pipelines.simulate.cli import main

sys.exit(main())
