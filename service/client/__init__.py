"""The Python client of the HTTP API and the ``gacd`` client commands: HTTP only, no server code."""
