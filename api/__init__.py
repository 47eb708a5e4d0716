"""The FastAPI service over graph, twin and scenarios."""
