"""``lemgrid powerflow``: placeholder until the grid package lands."""
