"""Integrations with other libraries, each behind its optional extra (``aioq[otel]``)."""
