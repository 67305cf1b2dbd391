"""The project's aioq App. Views send with it; a worker runs it::

DJANGO_SETTINGS_MODULE=mysite.settings aioq worker mysite.aioq_app:app
"""

import os

from aioq import App
from aioq.contrib.django import setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = App(prefix=os.environ.get("AIOQ_PREFIX", "aioq"))

# django.setup() (in a worker), connections closed/recycled around each sync task,
# and every installed app's tasks module imported (shop.tasks).
setup(app)
