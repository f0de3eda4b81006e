"""The HTTP service around :mod:`gacd_core`, one folder per role (the README's "Where things live").

- :mod:`service.api`: the FastAPI app (HTTP, auth, uploads, responses); never imports torch or Celery.
- :mod:`service.state`: what the API and the workers share: settings, the Redis store and its typed
  records, the queue, the artifact store; no FastAPI, no Celery tasks, no torch.
- :mod:`service.client`: the Python client of the HTTP API and the ``gacd`` client commands (HTTP only).
- :mod:`service.launch`: the processes a deployment runs and ``gacd serve``, which starts them here.

The workers (:mod:`worker`) import :mod:`service.state` and :mod:`gacd_core`, never the API.
"""
