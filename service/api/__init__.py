"""The FastAPI app: HTTP, auth, uploads, responses. It reads and writes through :mod:`service.state` and
reaches the workers only through the queue; it never imports torch, Celery tasks or the workers."""
