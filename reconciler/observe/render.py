"""ObservedState -> plain data (dicts, lists, strings) for `reconciler observe`.

Pure. Models print with their camelCase names and only the fields observed (unset
fields are the manifest defaults and say nothing about the host); secrets print as
"(sensitive)" through the models' own serializer. Keys come out sorted so YAML and
JSON renderings are stable. Called by `reconciler.cli.observe`, and by the planner
for the observed fingerprint (so it runs on every plan and is kept cheap).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from reconciler.secrets import holds_secret, redact_record
from reconciler.model.host import HostPciDevice
from reconciler.model.observed import DeviceHealth, DomainInfo, ObservedState

Record = DomainInfo | DeviceHealth | HostPciDevice
Getter = tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]
_FLAT = (str, int, float, bool, type(None))  # values dataclasses.asdict would keep as they are
_GETTERS: dict[type[Record], Getter] = {}


def _getter(cls: type[Record]) -> Getter:
    """The field names of a record class and one call that reads them all."""
    found = _GETTERS.get(cls)
    if found is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        get = operator.attrgetter(*names)
        found = _GETTERS[cls] = (names, get if len(names) > 1 else lambda obj: (get(obj),))
    return found


def _asdict(obj: Record) -> dict[str, Any]:
    """`dataclasses.asdict` for the flat records here (domains, health, host PCI
    devices), without its deep copy; a record holding anything else takes asdict."""
    names, get = _getter(type(obj))
    values = get(obj)
    for value in values:
        if not isinstance(value, _FLAT):
            return dataclasses.asdict(obj)
    return dict(zip(names, values))


def _specs(table: Mapping[str, BaseModel]) -> dict[str, Any]:
    """Each model's `spec` as the observer set it: what dumping the whole model with
    exclude_unset and taking its `spec` gives, without dumping the rest."""
    out: dict[str, Any] = {}
    for name, model in sorted(table.items()):
        spec = getattr(model, "spec", None) if "spec" in model.model_fields_set else None
        out[name] = (spec.__pydantic_serializer__.to_python(spec, mode="json", by_alias=True, exclude_unset=True)
                     if isinstance(spec, BaseModel) else {})
    return out


def _domain(info: DomainInfo) -> dict[str, Any]:
    """A domain's facts; `unfinished`, `xenstore_gone` and `passthrough` only when set, the record with
    its secrets redacted."""
    data = _asdict(info)
    if not info.unfinished:
        del data["unfinished"]
    if not info.xenstore_gone:
        del data["xenstore_gone"]
    if info.passthrough is None:
        del data["passthrough"]
    if info.applied is not None and holds_secret(info.applied):
        data["applied"] = redact_record(info.applied)
    return data


def _rpc(state: ObservedState) -> dict[str, Any]:
    """rpc-proxy's policy: the global rules file's rule lines as written, blank lines and
    whole-line `#` comments left out (null: no file, or unreadable), and each VM's entry by
    uuid, named (`vm`) when an observed domain holds that uuid."""
    assert state.rpc is not None
    names = {info.uuid: name for name, info in state.domains.items() if info.uuid}
    text = state.rpc.global_rules
    lines = None if text is None else [
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    vms: dict[str, Any] = {}
    for uuid, entry in sorted(state.rpc.vms.items()):
        vms[uuid] = {"rules": list(entry.rules), "properties": dict(entry.properties),
                     **({"vm": names[uuid]} if uuid in names else {})}
    return {"globalRules": lines, "vms": vms}


def observed_to_data(state: ObservedState) -> dict[str, Any]:
    """The whole observed state as one JSON-compatible dict; `hostPci`, `firewall` and `rpc`
    only when the source shows them (a live or simulated host, not a dump)."""
    data: dict[str, Any] = {
        "domains": {name: _domain(info) for name, info in sorted(state.domains.items())},
        "vms": _specs(state.vms),
        "disks": _specs(state.disks),
        "nics": _specs(state.nics),
        "pci": _specs(state.pci),
        "health": {name: _asdict(h) for name, h in sorted(state.health.items())},
        "pciAssignable": list(state.pci_assignable),
        "problems": list(state.problems),
    }
    if state.host_pci is not None:
        data["hostPci"] = [_asdict(dev) for dev in state.host_pci]
    if state.firewall is not None:
        data["firewall"] = [str(entry) for entry in state.firewall]
    if state.rpc is not None:
        data["rpc"] = _rpc(state)
    if state.pciback_bound:
        data["pcibackBound"] = dict(state.pciback_bound)
    if state.building:
        data["building"] = dict(state.building)
    if state.stranded:
        data["stranded"] = {name: {"kind": d.kind, "vm": d.vm, "devid": d.devid, "backendDomid": d.backend_domid,
                                   **({"vdev": d.vdev} if d.vdev else {})} for name, d in state.stranded.items()}
    return data
