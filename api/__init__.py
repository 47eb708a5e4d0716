"""The FastAPI service over graph, twin and scenarios: ``create_app(settings)``."""

from api.main import create_app, uvicorn_config
from api.settings import Settings, load_settings

__all__ = ["Settings", "create_app", "load_settings", "uvicorn_config"]
