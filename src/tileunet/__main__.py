"""``python -m tileunet`` is the ``tileunet`` command."""

import sys

from tileunet.cli import main

sys.exit(main())
