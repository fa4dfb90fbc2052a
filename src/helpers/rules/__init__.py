"""RULES as data: the code lists (``codes``), the chain-care programmes (``programmes``) and the
quality-indicator definitions (``indicators``) read from ``parameters/``, validated, with no SQL run.
The prepare step (``helpers.cube``) computes what these rules define."""
