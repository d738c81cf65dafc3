"""``python -m slamp_deploy`` is the same as ``slamp-deploy``."""

from slamp_deploy.cli import entrypoint

entrypoint()
