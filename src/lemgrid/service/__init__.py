"""The market operator: participants trade over HTTP against the same engine as the lab.

``create_app`` (in :mod:`lemgrid.service.app`) builds the FastAPI application; ``lemgrid serve``
runs it with uvicorn. See ``docs/service.md``.
"""
