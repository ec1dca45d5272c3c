"""``python -m wsls ...`` (and ``torchrun -m wsls ...``): the ``wsls`` command."""

import sys

from wsls.cli import main

sys.exit(main())
