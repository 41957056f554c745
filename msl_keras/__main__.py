"""`python -m msl_keras` runs the `msl-keras` command line."""

import sys

from msl_keras.cli import main

sys.exit(main())
