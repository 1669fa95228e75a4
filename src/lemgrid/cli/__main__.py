"""``python -m lemgrid.cli``."""

from lemgrid.cli import main

main()
