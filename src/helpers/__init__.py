"""Spiegel: reproducible chain-care reporting for Dutch care groups.

The package is called ``helpers`` (the design card's ``src/helpers/``); the
console command is ``spiegel``. One module per role; see README.md.
"""

__version__ = "0.1.0"
