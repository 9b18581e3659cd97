"""`python tests/synthetic_cli.py ARGS`: the fmnist CLI in a child process, with data.FILES
pinned to the synthetic dataset's digests from $FMNIST_TEST_FILES (JSON). Tests only."""

import json
import os
import sys

from fmnist import data
from fmnist.cli import main

data.FILES = {kind: tuple(v) for kind, v in json.loads(os.environ["FMNIST_TEST_FILES"]).items()}
if __name__ == "__main__":  # spawned workers (tune --workers) import this module again
    sys.exit(main())
