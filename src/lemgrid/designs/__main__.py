"""``python -m lemgrid.designs``: print the designs table of ``docs/scenario.md``."""

from lemgrid.designs import markdown_table

print(markdown_table())
