"""Starting the service: the command lines of its processes (shared with the deployment files),
``gacd serve`` (Redis, workers and the API on this machine) and ``make demo``."""
