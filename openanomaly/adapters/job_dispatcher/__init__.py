"""Job dispatchers: where train and infer jobs run (local threads; Celery in cluster mode)."""
