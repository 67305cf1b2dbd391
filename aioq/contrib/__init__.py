"""Integrations with other frameworks and libraries, each behind its own extra:
``aioq.contrib.django`` (``aioq[django]``), ``aioq.contrib.otel`` (``aioq[otel]``).
Nothing in ``aioq`` itself imports them."""
