"""The web dashboard (``pip install 'aioq[dashboard]'``): queues, jobs, dead letters,
schedules and workers of a running system, with a JSON API under ``/api/``.

Mount it in a Starlette or FastAPI service::

    from aioq.dashboard import create_app

    service.mount("/aioq", create_app(app))

or serve it alone with ``aioq dashboard myapp.tasks:app`` (127.0.0.1:8080). It reads
only through the app's read model (``App.status/workers/jobs``, ``Job.info``, dead
letters) and has no authentication of its own beyond the optional ``auth=`` /
``token=``: put it behind yours. Actions are POSTs with a CSRF token and a
confirmation step.
"""

from .site import create_app as create_app

__all__ = ["create_app"]
