"""The v1 routers, one module per resource."""

from api.routes import health, models, patients, query, records, trials, twins, viewer

__all__ = ["ROUTERS"]

ROUTERS = (health.router, records.router, patients.router, query.router, twins.router, models.router,
           trials.router, viewer.router)
