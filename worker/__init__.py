"""Celery app and tasks that run compression jobs and write their progress to store/."""
