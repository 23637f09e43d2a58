"""Fixtures for the real-host drivers (xl, viptables, pciback, open_xen).

Real: asyncio subprocesses started from argv lists, the drivers' files (the xl.cfg in
its private temp dir, sysfs attribute writes), our xenstore client on a Unix socket.
Faked: `xl` and `viptables` are small Python scripts written into tmp_path that act
like the tools (argv, the `xl list -v` / `viptables -L` formats, exit status 1 with a
stderr line on failure, slow answers on request) and log every argv they get. sysfs
is a directory tree under tmp_path (attribute files, `driver` symlinks); a tiny
in-test "kernel" applies what the driver writes to `unbind`/`bind`/`new_slot`/... by
moving symlinks, and records each write in order. xenstored is the simulated one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.pciback import SysfsPciBack
from reconciler.loader import load_or_raise
from reconciler.model import DesiredState


# The fake xl: state in STATE (domains, scripted failures, delays), argv log in LOG.
# Output formats follow xl_info.c (list -v) and xl's stderr conventions.
FAKE_XL = r'''#!__PYTHON__
import json, os, re, shutil, stat, sys, time
HERE = __HERE__
STATE, LOG = os.path.join(HERE, "xl-state.json"), os.path.join(HERE, "xl-calls.jsonl")
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(json.dumps(args) + "\n")
state = json.load(open(STATE))
cmd = args[0] if args else ""
time.sleep(state.get("sleep", {}).get(cmd, 0))
fail = state.get("fail", {}).get(cmd)
def save():
    with open(STATE, "w") as f:
        json.dump(state, f)
def die(message, status=1):
    sys.stderr.write(message + "\n")
    sys.exit(status)
def domain(ident):
    for d in state["domains"]:
        if str(d["domid"]) == ident or d["name"] == ident:
            return d
    die(f"{ident} is an invalid domain identifier (rc=-6)")
if cmd == "create":
    path = args[-1]
    sys.stderr.write(f"Parsing config from {path}\n")
    st = os.stat(path)
    state["cfg_mode"] = stat.S_IMODE(st.st_mode)
    state["cfg_dir_mode"] = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
    text = open(path).read()
    shutil.copy(path, os.path.join(HERE, "last.cfg"))
    if fail == "echo-password":
        line = next(l for l in text.splitlines() if l.startswith("vncpasswd"))
        save()
        die(f"{path}:9: config parsing error near `{line.split('= ', 1)[1]}': syntax error")
    if fail:
        save()
        die(fail)
    name = re.search(r'^name = "(.*)"$', text, re.M).group(1)
    uuid = re.search(r'^uuid = "(.*)"$', text, re.M).group(1)
    mem = int(re.search(r"^memory = (\d+)$", text, re.M).group(1))
    if any(d["name"] == name for d in state["domains"]):
        die(f'libxl: error: libxl_create.c:1234:do_domain_create: Domain with name "{name}" already exists.')
    domid = max([d["domid"] for d in state["domains"]] + [0]) + 1
    # libxl stores the config with passthrough chosen: on (sync_pt on x86) only with pci=.
    passthrough = "sync_pt" if re.search(r"^pci = ", text, re.M) else "disabled"
    state["domains"].append({"domid": domid, "name": name, "uuid": uuid, "mem": mem, "vcpus": 1,
                             "state": "--p---" if "-p" in args else "r-----", "passthrough": passthrough})
    save()
    sys.exit(0)
if fail:
    die(fail)
if cmd == "list" and args[1:] == ["-l"]:  # xl_info.c printf_info_one_json: the stored configs, dom0 has none
    print(json.dumps([{"domid": d["domid"], "config": {"c_info": {"type": "hvm", "name": d["name"], "uuid": d["uuid"],
                                                                   "passthrough": d.get("passthrough", "disabled")}}}
                      for d in state["domains"]], indent=4))
elif cmd == "list":
    print("Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label")
    rows = [{"domid": 0, "name": "Domain-0", "uuid": "00000000-0000-0000-0000-000000000000", "mem": 2048, "vcpus": 4, "state": "r-----"}]
    for d in sorted(rows + state["domains"], key=lambda d: d["domid"]):
        reason = " %8x" % 3 if d["state"][3] == "s" else " %8s" % "-"
        print("%-40s %5d %5lu %5d     %s  %8.1f" % (d["name"], d["domid"], d["mem"], d["vcpus"], d["state"], 12.5)
              + " " + d["uuid"] + reason + " %16s" % "-")
elif cmd == "domid":
    print(domain(args[1])["domid"])
elif cmd in ("pause", "unpause"):
    d = domain(args[1])
    d["state"] = ("--p---" if cmd == "pause" else "r-----")
elif cmd in ("destroy", "shutdown"):
    d = domain(args[-1])
    state["domains"].remove(d)
elif cmd in ("mem-set", "vcpu-set", "block-attach", "block-detach", "network-attach",
             "network-detach", "pci-attach", "pci-detach", "cd-insert", "cd-eject"):
    domain(args[1])
else:
    die(f'command "{cmd}" not implemented')
save()
'''

# The fake viptables: prints LISTING for -L; -I/-A/-D edit it; scripted failures by flag.
FAKE_VIPTABLES = r'''#!__PYTHON__
import json, os, sys, time
HERE = __HERE__
STATE, LOG = os.path.join(HERE, "vip-state.json"), os.path.join(HERE, "vip-calls.jsonl")
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(json.dumps(args) + "\n")
state = json.load(open(STATE))
flag = args[0] if args else ""
time.sleep(state.get("sleep", {}).get(flag, 0))
if flag in state.get("fail", {}):
    sys.stderr.write(state["fail"][flag] + "\n")
    sys.exit(255)
if flag == "-L":
    sys.stdout.write(state["listing"])
elif flag in ("-I", "-A", "-D"):
    pass
else:
    sys.stderr.write("Usage: viptables command [rule]\n")
    sys.exit(1)
'''


def _script(directory: Path, name: str, template: str) -> Path:
    path = directory / name
    text = template.replace("__PYTHON__", sys.executable).replace("__HERE__", repr(str(directory)))
    path.write_text(text)
    path.chmod(0o755)
    return path


@dataclass
class FakeTool:
    """One fake tool: `path` to run, `state` to script it, `calls()` for the argv it got."""

    path: Path
    state_file: Path
    log_file: Path

    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def update(self, **changes: Any) -> None:
        self.state_file.write_text(json.dumps({**self.state, **changes}))

    def calls(self) -> list[list[str]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


@pytest.fixture
def fake_xl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTool:
    """A fake `xl` first on PATH, with no domains but dom0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = FakeTool(_script(bin_dir, "xl", FAKE_XL), bin_dir / "xl-state.json", bin_dir / "xl-calls.jsonl")
    tool.state_file.write_text(json.dumps({"domains": []}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return tool


@pytest.fixture
def fake_viptables(tmp_path: Path) -> FakeTool:
    """A fake `viptables` (passed as the executable) listing OpenXT's default-deny table."""
    bin_dir = tmp_path / "vbin"
    bin_dir.mkdir(exist_ok=True)
    tool = FakeTool(_script(bin_dir, "viptables", FAKE_VIPTABLES), bin_dir / "vip-state.json", bin_dir / "vip-calls.jsonl")
    tool.state_file.write_text(json.dumps({"listing": "1 : ACCEPT 0:* -> 0:*\n2 : REJECT *:* -> *:*\n"}))
    return tool


# ---- sysfs ---------------------------------------------------------------------------------

DEVICES = {  # bdf: (vendor, device, class, driver)
    "0000:00:02.0": ("0x8086", "0x3e92", "0x030000", "i915"),
    "0000:00:1f.6": ("0x8086", "0x15bb", "0x020000", "e1000e"),
    "0000:03:00.0": ("0x10ec", "0x8168", "0x020000", None),
}


class KernelSysfsPciBack(SysfsPciBack):
    """SysfsPciBack whose attribute writes a tiny fake kernel applies: unbind removes the
    `driver` symlink, bind/drivers_probe create it, new_slot/remove_slot edit `slots`.
    `writes` records (path relative to the root, text) in order."""

    def __init__(self, root: Path, original: dict[str, str] | None = None) -> None:
        super().__init__(root)
        self.writes: list[tuple[str, str]] = []
        self.original = original or {}  # drivers_probe gives a device back to this driver

    def _write_attr(self, path: Path, value: str) -> None:
        super()._write_attr(path, value)  # the real write: file must exist and be writable
        self.writes.append((str(path.relative_to(self.root)), value))
        drivers = self.root / "bus/pci/drivers"
        link = self.devices / value / "driver"
        if path.name == "unbind":
            (path.parent / value).unlink()  # the driver's link to the device, then the device's
            link.unlink()
        elif path.name in ("bind", "drivers_probe"):
            name = path.parent.name if path.name == "bind" else self.original[value]
            link.symlink_to(f"../../../bus/pci/drivers/{name}")
            (drivers / name / value).symlink_to(f"../../../../devices/pci0000:00/{value}")
        elif path.name in ("new_slot", "remove_slot"):
            slots = drivers / "pciback/slots"
            lines = [line for line in slots.read_text().split() if line != value]
            slots.write_text("".join(f"{line}\n" for line in lines + ([value] if path.name == "new_slot" else [])))


def build_sysfs(root: Path, *, pciback: bool = True) -> Path:
    """A sysfs tree shaped like Linux's: devices/ entries are symlinks into devices/pci0000:00."""
    real = root / "devices/pci0000:00"
    bus = root / "bus/pci"
    (bus / "devices").mkdir(parents=True)
    (bus / "drivers_probe").write_text("")
    names = {d for *_, d in DEVICES.values() if d} | ({"pciback"} if pciback else set())
    for name in names:
        (bus / "drivers" / name).mkdir(parents=True)
        for attr in ("bind", "unbind", "new_id", "remove_id"):
            (bus / "drivers" / name / attr).write_text("")
    if pciback:
        for attr in ("new_slot", "remove_slot", "slots", "permissive"):
            (bus / "drivers/pciback" / attr).write_text("")
    for bdf, (vendor, device, klass, driver) in DEVICES.items():
        (real / bdf).mkdir(parents=True)
        for attr, value in (("vendor", vendor), ("device", device), ("class", klass)):
            (real / bdf / attr).write_text(value + "\n")
        (bus / "devices" / bdf).symlink_to(f"../../../devices/pci0000:00/{bdf}")
        if driver:
            (real / bdf / "driver").symlink_to(f"../../../bus/pci/drivers/{driver}")
            (bus / "drivers" / driver / bdf).symlink_to(f"../../../../devices/pci0000:00/{bdf}")
    return root


@pytest.fixture
def sysfs(tmp_path: Path) -> KernelSysfsPciBack:
    root = build_sysfs(tmp_path / "sys")
    return KernelSysfsPciBack(root, {bdf: d for bdf, (*_, d) in DEVICES.items() if d})




@pytest.fixture
def load_state(tmp_path: Path) -> Callable[[str], DesiredState]:
    """`load_state(yaml)`: the manifests through the real loader (defaults, nested
    devices, resolved MACs and NIC indexes), as the planner will hand them over."""
    counter = iter(range(1000))

    def load(text: str) -> DesiredState:
        path = tmp_path / f"manifest-{next(counter)}.yaml"
        path.write_text(text)
        return load_or_raise([str(path)])

    return load
