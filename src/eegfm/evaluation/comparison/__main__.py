import sys

from eegfm.evaluation.comparison.cli import main

sys.exit(main())
