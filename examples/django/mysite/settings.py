"""Settings of the example project (sqlite; Redis from ``$AIOQ_REDIS_URL``)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "mysite.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "db.sqlite3")),
        # the web process and the worker write to one file: wait for each other
        "OPTIONS": {"timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Django's own task framework (django.tasks; the django-tasks backport before
# Django 6) runs on the same aioq App and workers.
TASKS = {
    "default": {
        "BACKEND": "aioq.contrib.django.AioqBackend",
        "OPTIONS": {"app": "mysite.aioq_app:app"},
    }
}
