"""The simulated rpc-proxy policy: per-VM entries kept in host.json, and the global rules file.

Stage: simulated host. On a real OpenXT host rpc-proxy reads a VM's rules from the config
DB (`/vm/<uuid>/rpc-firewall-rules/<n>`) and the booleans its `if-boolean` rules test from
`/vm/<uuid>/<property>`; here one table keeps both, by VM uuid, saved with the other host
tables in host.json. `set` replaces a VM's whole entry and refuses a rule rpc-proxy could
not parse (`reconciler.rpc.parse_rule`, per-VM grammar) with a one-line error, leaving the
entry as it was; `clear` drops one (absent: nothing to do). Reloading rpc-proxy is
implicit: the table is the policy in force.

The global rules are the host's file, DIR/rpc-proxy.rules, read on each `read` and never
written by the reconciler: the host creates it from OpenXT's stock rules
(`reconciler.rpc.STOCK_RULES`) when it starts without one, as an OpenXT install ships
/etc/rpc-proxy.rules; edit it by hand to try another global policy. Unreadable: None.
Used by `drivers.sim.host` (state), `dispatch` (the `rpc_*` operations) and `frozen`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler import rpc
from reconciler.atomic import write_text_atomic
from reconciler.errors import TerminalHostError
from reconciler.model.host import RpcPolicy, RpcVmPolicy

GLOBAL_FILE = "rpc-proxy.rules"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PROPERTY = re.compile(r"[a-z0-9][a-z0-9-]*")


def seed_global(file: Path) -> None:
    """Create the global rules file from OpenXT's stock rules when there is none."""
    if not file.exists() and not file.is_symlink():
        write_text_atomic(str(file), rpc.STOCK_RULES, mode=0o644)


def read_global(file: Path | None) -> str | None:
    """The global rules file's text; None when there is none or it cannot be read."""
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def check_uuid(uuid: Any) -> str:
    if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
        raise TerminalHostError(f"bad request: a VM uuid must be 36 lower-case hex digits and dashes "
                                f"(8-4-4-4-12), found {uuid!r}")
    return uuid


def checked_entry(uuid: str, rules: Any, properties: Any) -> RpcVmPolicy:
    """The entry `set` stores, or a one-line TerminalHostError naming the bad rule or property."""
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise TerminalHostError(f"bad request: rules must be a list of strings, found {rules!r}")
    if not isinstance(properties, dict):
        raise TerminalHostError(f"bad request: properties must be an object of booleans, found {properties!r}")
    for number, text in enumerate(rules, start=1):
        try:
            rpc.parse_rule(text, per_vm=True)
        except rpc.RuleError as exc:
            raise TerminalHostError(f"rpc-proxy rule {number} of VM {uuid} ({text!r}), column {exc.column}: {exc}; "
                                    "nothing changed") from None
    for name, value in properties.items():
        if not isinstance(name, str) or not _PROPERTY.fullmatch(name) or not isinstance(value, bool):
            raise TerminalHostError(f"property {name!r} of VM {uuid}: expected a lower-case property name "
                                    f"(e.g. usb-control) with the value true or false, found {value!r}; nothing changed")
    return RpcVmPolicy(tuple(rules), tuple(sorted(properties.items())))


class RpcPolicyTable:
    def __init__(self, global_file: Path | None = None, vms: Mapping[str, RpcVmPolicy] | None = None) -> None:
        self.global_file = global_file
        self.vms: dict[str, RpcVmPolicy] = dict(vms or {})

    def read(self) -> RpcPolicy:
        return RpcPolicy(read_global(self.global_file), dict(sorted(self.vms.items())))

    def set(self, uuid: str, entry: RpcVmPolicy) -> None:
        self.vms[uuid] = entry

    def clear(self, uuid: str) -> None:
        self.vms.pop(uuid, None)

    def dump(self) -> dict[str, Any]:
        return {uuid: entry_to_json(entry) for uuid, entry in sorted(self.vms.items())}

    @classmethod
    def restore(cls, doc: Any, global_file: Path | None = None) -> RpcPolicyTable:
        """host.json's `rpc_policy` back into a table; ValueError says what is wrong."""
        if not isinstance(doc, dict):
            raise ValueError(f"rpc_policy must be an object by VM uuid, found {doc!r}")
        vms: dict[str, RpcVmPolicy] = {}
        for uuid, row in doc.items():
            if not isinstance(row, dict) or set(row) - {"rules", "properties"}:
                raise ValueError(f"rpc_policy entry {uuid!r} must be an object of rules and properties")
            try:
                vms[check_uuid(uuid)] = checked_entry(uuid, row.get("rules", []), row.get("properties", {}))
            except TerminalHostError as exc:
                raise ValueError(str(exc)) from None
        return cls(global_file, vms)


def entry_to_json(entry: RpcVmPolicy) -> dict[str, Any]:
    return {"rules": list(entry.rules), "properties": dict(entry.properties)}


def policy_to_json(policy: RpcPolicy) -> dict[str, Any]:
    """The `rpc_read` answer."""
    return {"global_rules": policy.global_rules, "vms": {u: entry_to_json(e) for u, e in policy.vms.items()}}


def policy_from_json(doc: Any) -> RpcPolicy:
    """An `rpc_read` answer back into an RpcPolicy; ValueError says what is wrong."""
    if not isinstance(doc, dict) or not isinstance(doc.get("vms"), dict) or \
            not isinstance(doc.get("global_rules"), (str, type(None))):
        raise ValueError(f"expected an object of global_rules and vms, found {doc!r}")
    table = RpcPolicyTable.restore(doc["vms"])
    return RpcPolicy(doc["global_rules"], dict(sorted(table.vms.items())))
