"""fstore's version, in a module of its own so that nothing imports it through ``fstore/__init__``."""
__version__ = "0.1.0"
