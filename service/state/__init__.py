"""What the API and the workers share: settings, the Redis store and its typed records, the queue and
the artifact store. No FastAPI, no Celery tasks, no torch: both processes import it."""
