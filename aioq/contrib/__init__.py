"""Integrations with other frameworks, each behind its own extra: ``aioq.contrib.django``
(``pip install 'aioq[django]'``). Nothing in ``aioq`` itself imports them."""
