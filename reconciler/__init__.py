"""Declarative reconciler for Xen hosts.

Stages: load (manifests -> DesiredState), observe (host -> ObservedState), diff, plan,
execute. The pure stages live in this package; host access goes through the ports in
`reconciler.ports`, implemented by the `drivers` package. Only `reconciler.cli` composes
drivers.
"""

__version__ = "0.1.0"
