"""``python -m llm_sandbox.cli``: the ``llm-sandbox`` command."""

from llm_sandbox.cli.main import main

main()
