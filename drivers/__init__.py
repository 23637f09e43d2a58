"""Host adapters: they implement the ports owned by `reconciler.ports`.

xenstore (wire-protocol client and the simulated xenstored), the simulated host, and the
real toolstack / pciback / viptables adapters. Nothing in `reconciler` outside `cli`
imports this package.
"""
