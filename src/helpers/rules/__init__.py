"""RULES as data: the code lists (``codes``), the chain-care programmes (``programmes``) and the
quality-indicator definitions (``indicators``) and the insurer contracts (``contracts``: tariffs, caps,
result reward, payment rounds, regioprestatie) read from ``parameters/``, validated, with no SQL run.
The prepare step (``helpers.cube``) computes what these rules define."""
