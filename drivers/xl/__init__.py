"""The real toolstack: `xl` behind `reconciler.ports.ToolstackPort`.

`toolstack.XlToolstack` runs xl; `cfg` (xl.cfg text), `specs` (device spec strings)
and `listing` (`xl list -v` rows) are pure and tested on their own; `command` runs
one tool and maps its failures (also used by `drivers.viptables`).
"""

from drivers.xl.cfg import render_cfg
from drivers.xl.listing import parse_list_verbose, power_from_state
from drivers.xl.specs import disk_spec, pci_spec, vif_spec
from drivers.xl.toolstack import XlSettings, XlToolstack

__all__ = [
    "XlSettings",
    "XlToolstack",
    "disk_spec",
    "parse_list_verbose",
    "pci_spec",
    "power_from_state",
    "render_cfg",
    "vif_spec",
]
