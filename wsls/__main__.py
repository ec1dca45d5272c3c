"""``python -m wsls ...`` (and ``torchrun -m wsls ...``): the ``wsls`` command."""

import sys

try:
    from wsls.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: one line, like later on
    print("wsls: error: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
