"""`reconciler resume [--host H]`: lift a suspension (the verb lives in `reconciler.cli.suspend`)."""

from reconciler.cli.suspend import register_resume as register

__all__ = ["register"]
