"""The reference implementation's ``llm_sandbox.core`` package: the names user code subclasses or type-checks
against, re-exported from where this library keeps them."""
