"""Languages the sandbox runs: one small data module each, listed in ``registry``."""
