import sys

from eegfm.evaluation.report.cli import main

sys.exit(main())
