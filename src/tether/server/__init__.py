"""The HTTP service (``tether serve``): tenants' API over the store, with embedded workers.

``create_app`` builds the FastAPI application over a ``ServerState``; ``Service`` runs
it under uvicorn together with the embedded workers and owns the drain on SIGTERM.
"""

from __future__ import annotations
