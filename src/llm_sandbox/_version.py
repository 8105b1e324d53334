"""The library's version, kept in one place for packaging and for ``llm_sandbox.__version__``."""

__version__ = "0.1.0"
