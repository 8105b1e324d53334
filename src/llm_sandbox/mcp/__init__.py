"""The MCP server: llm-sandbox's tools for assistants and agents, over stdio or streamable HTTP.

``execute_code`` (a fresh sandbox from a warm pool per language, every plot of the run as an image),
``get_supported_languages``, ``get_language_details`` and the resource ``sandbox://languages`` are the reference
server's; ``create_session``, ``run_in_session``, ``upload_file``, ``download_file``, ``list_sessions`` and
``close_session`` keep a sandbox (and, in Python, JavaScript, Ruby and R, an interpreter's state) across calls.
Start it with ``llm-sandbox-mcp`` (``command.py``); it needs the ``mcp`` extra (``pip install 'llm-sandbox[mcp]'``).

Modules: ``command`` (options and start), ``server`` (the tools), ``executor`` (the pools behind execute_code),
``sessions`` (the session registry), ``content`` (results as MCP content), ``http`` (the HTTP transport and its
bearer token), ``settings`` (configuration, with the reference's environment variables), ``languages``.
"""
