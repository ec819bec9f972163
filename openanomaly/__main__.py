"""`python -m openanomaly` is the same program as the `openanomaly` console script."""

from openanomaly.cli import main

main()
