"""ObservedState -> plain data (dicts, lists, strings) for `reconciler observe`.

Pure. Models print with their camelCase names and only the fields observed (unset
fields are the manifest defaults and say nothing about the host); secrets print as
"(sensitive)" through the models' own serializer. Keys come out sorted so YAML and
JSON renderings are stable. Called by `reconciler.cli.observe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from reconciler.model.observed import ObservedState


def _specs(table: Mapping[str, BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, model in sorted(table.items()):
        dumped = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
        out[name] = dumped.get("spec", {})
    return out


def observed_to_data(state: ObservedState) -> dict[str, Any]:
    """The whole observed state as one JSON-compatible dict; `hostPci` and `firewall`
    only when the source shows them (a live or simulated host, not a dump)."""
    data: dict[str, Any] = {
        "domains": {name: asdict(info) for name, info in sorted(state.domains.items())},
        "vms": _specs(state.vms),
        "disks": _specs(state.disks),
        "nics": _specs(state.nics),
        "pci": _specs(state.pci),
        "health": {name: asdict(h) for name, h in sorted(state.health.items())},
        "pciAssignable": list(state.pci_assignable),
        "problems": list(state.problems),
    }
    if state.host_pci is not None:
        data["hostPci"] = [asdict(dev) for dev in state.host_pci]
    if state.firewall is not None:
        data["firewall"] = [str(entry) for entry in state.firewall]
    return data
