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

import errno
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
from reconciler.model.host import FirewallEntry
from reconciler.ports import XenstoreOps


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
        reason = " %8x" % "-rscwS".index(d["state"][4]) if d["state"][3] == "s" else " %8s" % "-"
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
elif flag in ("-I", "-A", "-D") or (flag.startswith("-D") and flag[2:].isdigit()):
    pass
else:
    sys.stderr.write("Usage: viptables command [rule]\n")
    sys.exit(1)
'''


# A fake viptables that behaves like OpenXT's (libv4v/app/viptables.c over the hypervisor's
# v4v.c viptables code): the table (the hypervisor's list) in TABLE as JSON, argv parsed as
# its getopt_long does (first option with "AI:LD::Fd:e:p:q:j:h", later ones with
# "AI:LD:d:e:p:q:j:h": -D takes its number only attached, -D3 / --delete=3), -L printing
# `<n> : ACCEPT|REJECT <dom>:<port> -> <dom>:<port>` with `*` for any, -I n inserting before
# rule n (past the end, or 0: appended), -A appending, -D<n> deleting rule n, -D <rule>
# deleting the first rule with the same endpoints WHATEVER ITS TARGET (v4v_viptables_del
# compares src and dst only), -F flushing. An empty table lets everything through (the
# hypervisor's default is ACCEPT). Every argv is logged to LOG.
FAKE_VIPTABLES_V4V = r'''#!__PYTHON__
import json, os, re, sys
HERE = __HERE__
TABLE, LOG = os.path.join(HERE, "v4v-table.json"), os.path.join(HERE, "v4v-calls.jsonl")
ANY = 0x7FF4  # DOMID_INVALID
argv = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(json.dumps(argv) + "\n")
def usage(code):
    sys.stderr.write("Usage: viptables command [rule]\n")
    sys.exit(code)
def atoi(text):
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0
LONG = {"append": ("A", 0), "insert": ("I", 1), "list": ("L", 0), "delete": ("D", 2), "flush": ("F", 0),
        "dom-in": ("d", 1), "dom-out": ("e", 1), "port-in": ("p", 1), "port-out": ("q", 1), "jump": ("j", 1),
        "help": ("h", 0)}
def shorts(first):  # option letter -> 0 none, 1 required, 2 optional (attached only)
    table = {"A": 0, "I": 1, "L": 0, "D": 2 if first else 1, "d": 1, "e": 1, "p": 1, "q": 1, "j": 1, "h": 0}
    if first:
        table["F"] = 0
    return table
options, i = [], 0
while i < len(argv):
    arg = argv[i]
    i += 1
    if arg.startswith("--") and len(arg) > 2:
        name, eq, value = arg[2:].partition("=")
        if name not in LONG:
            usage(1)
        letter, kind = LONG[name]
        if kind == 1 and not eq:
            if i >= len(argv):
                usage(1)
            value, i = argv[i], i + 1
        options.append((letter, value if (eq or kind == 1) else None))
    elif arg.startswith("-") and len(arg) > 1:
        k = 1
        while k < len(arg):
            letter, k = arg[k], k + 1
            table = shorts(not options)
            if letter not in table:
                usage(1)
            if table[letter] == 0:
                options.append((letter, None))
                continue
            value = arg[k:]
            if not value and table[letter] == 1:
                if i >= len(argv):
                    usage(1)
                value, i = argv[i], i + 1
            options.append((letter, value or None))
            break
    # a non-option argument: GNU getopt moves it to the end, viptables never reads it
if not options:
    usage(1)
rule = {"src": [ANY, -1], "dst": [ANY, -1], "accept": -1}
action, position = None, -1
for letter, value in options:
    if letter in "ALF":
        action = letter
    elif letter == "I":
        action, position = "I", atoi(value)
    elif letter == "D":
        action = "D"
        if value:
            position = atoi(value)
    elif letter == "d": rule["src"][0] = atoi(value)
    elif letter == "e": rule["dst"][0] = atoi(value)
    elif letter == "p": rule["src"][1] = atoi(value)
    elif letter == "q": rule["dst"][1] = atoi(value)
    elif letter == "j":
        if value not in ("ACCEPT", "REJECT"):
            usage(1)
        rule["accept"] = 1 if value == "ACCEPT" else 0
    elif letter == "h":
        usage(0)
table = json.load(open(TABLE)) if os.path.exists(TABLE) else []
if action in ("A", "I"):
    if rule["accept"] == -1:
        usage(1)
    walk, at = (-1 if action == "A" else position) - 1, 0
    while walk != 0 and at < len(table):
        at, walk = at + 1, walk - 1
    table.insert(at, rule)
elif action == "D" and position != -1:
    if 1 <= position <= len(table):
        del table[position - 1]
elif action == "D":
    for at, held in enumerate(table):
        if held["src"] == rule["src"] and held["dst"] == rule["dst"]:  # the target is not compared
            del table[at]
            break
elif action == "F":
    table = []
elif action == "L":
    def side(dom, port):
        return ("*" if dom == ANY else str(dom)) + ":" + ("*" if port == -1 else str(port))
    for n, held in enumerate(table, start=1):
        print(f"{n} : {'ACCEPT' if held['accept'] == 1 else 'REJECT'} {side(*held['src'])} -> {side(*held['dst'])}")
else:
    usage(1)
if action != "L":
    with open(TABLE + ".tmp", "w") as out:
        json.dump(table, out)
    os.replace(TABLE + ".tmp", TABLE)
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


@dataclass
class V4VTable:
    """The fake v4v viptables: `path` to run, `table()` as entries, `load(...)` to set it."""

    path: Path
    table_file: Path
    log_file: Path

    def load(self, *entries: FirewallEntry) -> None:
        def side(dom: int | None, port: int | None) -> list[int]:
            return [0x7FF4 if dom is None else dom, -1 if port is None else port]
        rows = [{"src": side(e.dom_in, e.port_in), "dst": side(e.dom_out, e.port_out),
                 "accept": 1 if e.target == "ACCEPT" else 0} for e in entries]
        self.table_file.write_text(json.dumps(rows))

    def table(self) -> list[FirewallEntry]:
        if not self.table_file.exists():
            return []
        def value(number: int, any_: int) -> int | None:
            return None if number == any_ else number
        return [FirewallEntry(value(r["src"][0], 0x7FF4), value(r["dst"][0], 0x7FF4), value(r["src"][1], -1),
                              value(r["dst"][1], -1), "ACCEPT" if r["accept"] == 1 else "REJECT")
                for r in json.loads(self.table_file.read_text())]

    def calls(self) -> list[list[str]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines()]


@pytest.fixture
def v4v(tmp_path: Path) -> V4VTable:
    """A fake `viptables` over a v4v table that starts empty: a host without xenmgr."""
    bin_dir = tmp_path / "v4v"
    bin_dir.mkdir(exist_ok=True)
    return V4VTable(_script(bin_dir, "viptables", FAKE_VIPTABLES_V4V), bin_dir / "v4v-table.json", bin_dir / "v4v-calls.jsonl")


# ---- sysfs ---------------------------------------------------------------------------------

DEVICES = {  # bdf: (vendor, device, class, driver)
    "0000:00:02.0": ("0x8086", "0x3e92", "0x030000", "i915"),
    "0000:00:1f.6": ("0x8086", "0x15bb", "0x020000", "e1000e"),
    "0000:03:00.0": ("0x10ec", "0x8168", "0x020000", None),
}
RESETTABLE = {"0000:00:1f.6", "0000:03:00.0"}  # devices with a `reset` file (the GPU has no reset method here)
UNSET = "(null)\n"  # what driver_override reads when no override is set


class KernelSysfsPciBack(SysfsPciBack):
    """SysfsPciBack whose attribute writes a tiny fake kernel applies as Linux's PCI core
    and xen-pciback do (drivers/pci/pci-driver.c, pci-sysfs.c, xen/xen-pciback/pci_stub.c):
    - `<driver>/unbind` ENODEV unless the device is bound to that driver; else it is unbound.
    - `<driver>/bind` EBUSY if the device has a driver; ENODEV if its `driver_override`
      names another driver; pciback also ENODEV unless the BDF is in its `slots` (new_slot)
      or the override says pciback; the driver's own id match is `original`.
    - `drivers_probe`: the override's driver if set (nothing if it does not exist), else
      the driver the device was found with (`original`), which pciback beats if it seizes it.
    - `driver_override`: a name sets it, an empty line clears it (reads `(null)`).
    - `pciback/new_slot` appends (NOT idempotent: duplicates appear), `remove_slot` drops
      every copy. `<device>/reset` takes `1` and counts a reset.
    `writes` records (path relative to the root, text) in order, refused writes included."""

    def __init__(self, root: Path, original: dict[str, str] | None = None,
                 xenstore: XenstoreOps | None = None) -> None:
        super().__init__(root, xenstore)
        self.writes: list[tuple[str, str]] = []
        self.original = original or {}  # each device's own driver (what its ids match)
        self.resets: list[str] = []

    def _link(self, bdf: str, name: str) -> None:
        (self.devices / bdf / "driver").symlink_to(f"../../../bus/pci/drivers/{name}")
        (self.root / "bus/pci/drivers" / name / bdf).symlink_to(f"../../../../devices/pci0000:00/{bdf}")

    def _override(self, bdf: str) -> str | None:
        text = (self.devices / bdf / "driver_override").read_text().strip()
        return None if text == "(null)" else text

    def _claims(self, name: str, bdf: str) -> bool:
        override = self._override(bdf)
        if override is not None:
            return override == name
        if name == "pciback":
            return bdf in (self.pciback / "slots").read_text().split()
        return self.original.get(bdf) == name

    def _write_attr(self, path: Path, value: str) -> None:
        self.writes.append((str(path.relative_to(self.root)), value))
        if path.name == "driver_override":  # the kernel stores it; reading shows (null) when cleared
            super()._write_attr(path, value.strip() + "\n" if value.strip() else UNSET)
            return
        super()._write_attr(path, value)  # the real write: the file must exist and be writable
        drivers = self.root / "bus/pci/drivers"
        driver = os.path.basename(os.path.realpath(path.parent))  # <device>/driver/unbind names the bound driver
        if path.name == "reset":
            self.resets.append(path.parent.name)
        elif path.name == "unbind":
            if self.driver_of(value) != driver:
                raise OSError(errno.ENODEV, "No such device")
            (drivers / driver / value).unlink()  # the driver's link to the device, then the device's
            (self.devices / value / "driver").unlink()
        elif path.name == "bind":
            if self.driver_of(value) is not None:
                raise OSError(errno.EBUSY, "Device or resource busy")
            if not self._claims(driver, value):
                raise OSError(errno.ENODEV, "No such device")
            self._link(value, driver)
        elif path.name == "drivers_probe":
            override = self._override(value)
            if self.driver_of(value) is None:
                if override is not None:
                    if (drivers / override).is_dir():
                        self._link(value, override)
                elif self._claims("pciback", value):
                    self._link(value, "pciback")
                elif value in self.original:
                    self._link(value, self.original[value])
        elif path.name == "new_slot":
            slots = drivers / "pciback/slots"
            slots.write_text(slots.read_text() + value + "\n")
        elif path.name == "remove_slot":
            slots = drivers / "pciback/slots"
            slots.write_text("".join(f"{line}\n" for line in slots.read_text().split() if line != value))


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
        (real / bdf / "driver_override").write_text(UNSET)
        if bdf in RESETTABLE:
            (real / bdf / "reset").write_text("")
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
