"""The FastAPI service over the application layer (:mod:`service`): ``create_app(settings)``."""

from api.main import create_app, uvicorn_config, uvicorn_kwargs
from api.security import KeyStore, KeyStoreError
from api.settings import Settings, load_settings

__all__ = ["KeyStore", "KeyStoreError", "Settings", "create_app", "load_settings", "uvicorn_config", "uvicorn_kwargs"]
