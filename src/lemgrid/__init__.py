"""lemgrid: grid-aware local electricity markets.

Importing ``lemgrid`` stays light: heavy dependencies (pandapower, simbench, HiGHS, FastAPI,
web3) are imported by the modules that need them.
"""

from lemgrid.errors import InfeasibleError, InputError, NotBuiltError

__version__ = "0.1.0"
__all__ = ["InputError", "InfeasibleError", "NotBuiltError", "__version__"]
