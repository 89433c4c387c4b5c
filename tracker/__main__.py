"""`python -m tracker` is the `tracker` command."""

from tracker.cli.main import main

main()
