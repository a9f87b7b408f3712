import sys

from eegfm.training.finetune.cli import main

sys.exit(main())
