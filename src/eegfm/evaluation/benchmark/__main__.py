import sys

from eegfm.evaluation.benchmark.cli import main

sys.exit(main())
