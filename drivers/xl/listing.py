"""Parse `xl list -v` into DomainStatus values, and `xl list -l` for passthrough: pure.

Why `-v` and not `-l`: `xl list -l` prints each domain's stored *configuration*
(`{"domid", "config"}`, reference xen.md 3.7) and skips domains that have none; it
carries no runtime state. The power state exists only in the plain listing's six state
characters, and `-v` adds the UUID, so one call gives every DomainStatus field.

Row format (xl_info.c `list_domains`, verbose): name padded to 40 columns, domid, MiB
(current + outstanding), online vCPUs, the state characters `rbps?d`, CPU seconds,
UUID, shutdown reason code (hex or `-`), security label (`-` without XSM).

`xl list -l` adds the one build fact the diff needs: whether the domain was built with
PCI passthrough (libxl enables it only when the config has `pci=`, and Xen then refuses a
later `pci-attach`). libxl stores the config after `libxl__domain_config_setdefault`, so
`c_info.passthrough` is never `default` there: `disabled`, or `sync_pt`/`share_pt`
(`enabled` in a config that asked for it). An xl that predates the field (< 4.13) shows
only `pcidevs`: a domain built with one has passthrough; without, it cannot be said.
Called by `drivers.xl.toolstack.XlToolstack.list_domains`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from reconciler.errors import TerminalHostError
from reconciler.model.host import DomainPower, DomainStatus

_ROW = re.compile(
    r"^(?P<name>.*?)\s+(?P<domid>\d+)\s+(?P<mem>\d+)\s+(?P<vcpus>\d+)\s+"
    r"(?P<state>[r-][b-][p-][s-][-rscwS?][d-])\s+(?P<time>\d+(?:\.\d+)?)\s+"
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"\s+(?P<reason>[0-9a-fA-F]+|-)\s+(?P<label>\S+)\s*$"
)


def power_from_state(state: str) -> DomainPower:
    """Six state characters -> power. Dying wins (the domain is going away); a shutdown
    domain whose reason letter is `c` crashed, `r` rebooted (the guest asked for a
    reboot; xl's monitor would rebuild it, but domains are made with `xl create -e`, so
    none runs); `------` is runnable, i.e. running."""
    if state[5] == "d":
        return "dying"
    if state[3] == "s":
        return "crashed" if state[4] == "c" else "rebooted" if state[4] == "r" else "shutdown"
    if state[2] == "p":
        return "paused"
    return "running"


def parse_list_verbose(text: str) -> list[DomainStatus]:
    """Every domain but dom0, sorted by domid. Raises TerminalHostError naming the first
    line it cannot read (a listing read partially would make domains look absent)."""
    domains: list[DomainStatus] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("Name "):
            continue
        match = _ROW.match(line)
        if match is None:
            raise TerminalHostError(
                f"cannot read line {number} of `xl list -v`: {line.strip()!r}; expected "
                "NAME ID MEM VCPUS STATE TIME UUID REASON LABEL (xl 4.x format)"
            )
        domid = int(match["domid"])
        if domid == 0:
            continue
        domains.append(DomainStatus(
            domid=domid, name=match["name"].strip(), uuid=match["uuid"].lower(),
            power=power_from_state(match["state"]), memory_mib=int(match["mem"]),
            vcpus=int(match["vcpus"]),
        ))
    return sorted(domains, key=lambda d: d.domid)


def parse_domid(text: str, name: str) -> int:
    """The output of `xl domid NAME`: one decimal number."""
    value = text.strip()
    if not value.isdigit():
        raise TerminalHostError(f"`xl domid {name}` printed {value!r}, expected a domain id")
    return int(value)


_PASSTHROUGH: Mapping[str, bool] = {"disabled": False, "enabled": True, "sync_pt": True, "share_pt": True}


def parse_passthrough(text: str) -> dict[int, bool | None]:
    """domid -> was it built with passthrough, from `xl list -l` (JSON, xl.conf's default
    output format). A domain xl prints no config for (dom0, a stub domain without one)
    is absent; output that is not JSON (`output_format="sxp"`) tells nothing: {}."""
    try:
        doc = json.loads(text) if text.strip() else []
    except ValueError:
        return {}
    out: dict[int, bool | None] = {}
    for item in doc if isinstance(doc, list) else []:
        domid = item.get("domid") if isinstance(item, dict) else None
        config = item.get("config") if isinstance(item, dict) else None
        if not isinstance(domid, int) or isinstance(domid, bool) or not isinstance(config, dict):
            continue
        c_info = config.get("c_info")
        mode = c_info.get("passthrough") if isinstance(c_info, dict) else None
        if isinstance(mode, str) and mode in _PASSTHROUGH:
            out[domid] = _PASSTHROUGH[mode]
        elif config.get("pcidevs"):
            out[domid] = True
        else:
            out[domid] = None
    return out
