"""The production form's helpers: what docker-compose.yml runs besides the ``psymon`` commands.

* :mod:`services.deploy.topics` creates psymon's topics once, before anything
  produces to them (the ``topics`` service);
* :mod:`services.deploy.healthcheck` answers the containers' health checks.

The image (``Dockerfile``), the database roles (``initdb/``) and the
operator's guide (docs/operations-deploy.md) live beside them.
"""

from __future__ import annotations
