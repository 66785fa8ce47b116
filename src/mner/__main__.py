"""``python -m mner``: the command line, for where the ``mner`` script is not installed."""

from mner.cli import main

main()
