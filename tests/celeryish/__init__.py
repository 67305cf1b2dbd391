"""An app laid out the Celery way: the App in one module (named ``celery``, not
``app``), its tasks in another that only ``include=[...]`` names."""
