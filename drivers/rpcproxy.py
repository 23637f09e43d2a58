"""DbRpcPolicy: the RpcPolicyPort on an OpenXT host, through the config DB's `db-cmd` and SIGHUP.

Stage: driver (rpc-proxy policy). Called by observe/execute through
`reconciler.ports.RpcPolicyPort`; composed by `drivers.xen.open_xen`.

Where rpc-proxy reads its policy, and so what this driver writes (OpenXT/manager
rpc-proxy/RulesCache.hs, openxt.md 8):
- the global rules from one file, `/etc/rpc-proxy.rules` (its `rulesPath` setting). The
  reconciler only reads it (`read().global_rules`; None when it cannot be read): it is the
  host's policy, shipped by the OpenXT image, not a resource of the manifests.
- a VM's own rules ONLY from the config DB, `dbReadWithDefault [] "/vm/<uuid>/rpc-firewall-rules"`:
  a list, i.e. the children `0`, `1`, ... in the order dbd lists them (xenmgr's `Marshall [a]`
  writes them that way after removing the old list), each a rule line, with `dom-uuid <uuid>`
  forced onto every one. rpc-proxy caches them per uuid (and the global rules) until SIGHUP
  (`dropCache`); it reads a uuid first seen after that at once.
- the booleans `if-boolean` tests from xenmgr's VM properties, which xenmgr keeps in the
  same DB at `/vm/<uuid>/<property>` as "true"/"false" (openxt.md 1.0, 1.8).

The issue proposed "a rules file per VM plus SIGHUP". rpc-proxy never reads such a file:
per-VM rules written to files would never be enforced, so that shape is not used. This
driver writes what rpc-proxy reads, through the DB's own client `db-cmd` (OpenXT/manager
dbd/db_cmd.ml), which dbd (not this process) writes atomically per key:
- `read`: `db-cmd ls -f /vm` once (its do_ls format: `PATH =` for a node with children,
  `PATH = "VALUE"` for a leaf, values printed raw), plus the global file. An entry is
  reported for each uuid holding `rpc-firewall-rules` or one of the properties
  `rpc.PROPERTY_DEFAULTS` names, rules in the DB's listing order (the order rpc-proxy
  evaluates them), properties sorted ("true"/"yes"/"1" and "false"/"no"/"0" as xenmgr
  reads booleans; another value is reported as an error, not guessed).
- `set`: every rule checked with `rpc.parse_rule(per_vm=True)` and every property name
  with `rpc.PROPERTY_DEFAULTS` BEFORE anything is written (a refusal changes nothing);
  then `db-cmd rm /vm/<uuid>/rpc-firewall-rules`, one `db-cmd write .../<i> RULE` per rule
  in order (as xenmgr writes a list), one `write /vm/<uuid>/<property> true|false` per
  given property and `rm` of the known properties not given (the whole entry is replaced);
  then SIGHUP.
- `clear`: `rm` of the rules list and of the known properties, then SIGHUP.
- reload: SIGHUP to every process whose `<proc>/<pid>/comm` is `rpc-proxy` (`proc_root`
  configurable). None running: nothing to do, rpc-proxy reads the DB when it starts.

Every command is an argv list run without a shell (`drivers.xl.command.run_tool`, which
bounds it with a timeout and kills its process group); a failure is one line naming the
`db-cmd` subcommand, its exit status and the last line it printed. A uuid must be a
lower-case canonical uuid before it becomes part of a DB path.

Limits, said plainly: the writes are several commands, not one transaction. rpc-proxy does
not see them half-done unless its cache is dropped in between (a SIGHUP from elsewhere,
e.g. xenmgr on a usb-control change) or the VM makes its first call meanwhile; the
reconciler sets a VM's entry before the VM is unpaused. An interrupted set leaves a
partial entry that `read` shows, so the next plan sets it again. On a host where xenmgr
runs, xenmgr owns `/vm/<uuid>` and these property keys: this driver is for hosts the
reconciler drives in xenmgr's place, and it only touches the keys named above.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from drivers.xl.command import run_tool
from reconciler import rpc
from reconciler.errors import TerminalHostError
from reconciler.model.host import RpcPolicy, RpcVmPolicy

RULES_KEY = "rpc-firewall-rules"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")  # xenmgr's Marshall Bool reads these
_NODE = re.compile(r'^(?P<path>/\S*) =(?: "(?P<value>.*))?$')


@dataclass(frozen=True)
class RpcProxySettings:
    db_cmd: str = "db-cmd"  # PATH lookup; OpenXT installs /usr/bin/db-cmd
    rules_file: Path = Path("/etc/rpc-proxy.rules")  # rpc-proxy's rulesPath
    proc_root: Path = Path("/proc")  # where to find rpc-proxy to SIGHUP it; tests point it elsewhere
    timeout: float = 30.0  # seconds per db-cmd: one DBus call to dbd, anything slower is stuck
    process_name: str = "rpc-proxy"  # its /proc/PID/comm


def parse_ls(text: str) -> dict[str, str | None]:
    """`db-cmd ls -f PATH` output -> {path: value, None for a node listed with children}. Pure.

    do_ls prints values raw between quotes, so a value holding a newline continues on the
    next lines, up to the line that ends with the closing quote."""
    nodes: dict[str, str | None] = {}
    open_path: str | None = None  # a leaf whose value has not reached its closing quote yet
    for line in text.split("\n"):
        if open_path is not None:
            nodes[open_path] = f"{nodes[open_path]}\n{line}"
        else:
            match = _NODE.match(line)
            if match is None:
                if line.strip():
                    raise TerminalHostError(f"cannot read `db-cmd ls -f` output line {line!r}: "
                                            "expected 'PATH =' or 'PATH = \"VALUE\"'")
                continue
            nodes[match["path"]] = match["value"]
            open_path = match["path"] if match["value"] is not None else None
        value = nodes[open_path] if open_path is not None else None
        if open_path is not None and value is not None and value.endswith('"'):
            nodes[open_path] = value[:-1]
            open_path = None
    if open_path is not None:
        raise TerminalHostError(f"cannot read `db-cmd ls -f` output: the value of {open_path} has no closing quote")
    return nodes


def policy_of(nodes: Mapping[str, str | None], global_rules: str | None) -> RpcPolicy:
    """The entries `parse_ls` of `/vm` shows (see the module docstring). Pure."""
    rules: dict[str, list[str]] = {}
    properties: dict[str, dict[str, bool]] = {}
    for path, value in nodes.items():
        parts = path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "vm" or not _UUID.fullmatch(parts[1]):
            continue
        uuid = parts[1]
        if parts[2] == RULES_KEY and len(parts) == 4 and value is not None:
            rules.setdefault(uuid, []).append(value)
        elif len(parts) == 3 and parts[2] in rpc.PROPERTY_DEFAULTS and value is not None:
            word = value.strip().lower()
            if word not in (*_TRUE, *_FALSE):
                raise TerminalHostError(f"the config DB's {path} is {value!r}, not a boolean (true or false); "
                                        "xenmgr could not read it either: fix or remove it")
            properties.setdefault(uuid, {})[parts[2]] = word in _TRUE
    vms = {uuid: RpcVmPolicy(tuple(rules.get(uuid, ())), tuple(sorted(properties.get(uuid, {}).items())))
           for uuid in sorted({*rules, *properties})}
    return RpcPolicy(global_rules, vms)


def _checked(uuid: str, policy: RpcVmPolicy | None = None) -> None:
    """A one-line TerminalHostError for what must not reach the DB; nothing written yet."""
    if not _UUID.fullmatch(uuid):
        raise TerminalHostError(f"VM uuid {uuid!r}: expected a lower-case uuid (8-4-4-4-12 hex digits)")
    if policy is None:
        return
    for number, text in enumerate(policy.rules, start=1):
        try:
            rpc.parse_rule(text, per_vm=True)
        except rpc.RuleError as exc:
            raise TerminalHostError(f"rpc-proxy rule {number} of VM {uuid} ({text!r}), column {exc.column}: {exc}; "
                                    "nothing written") from None
    for name, value in policy.properties:
        if name not in rpc.PROPERTY_DEFAULTS or not isinstance(value, bool):
            raise TerminalHostError(f"property {name!r} of VM {uuid}: expected one of "
                                    f"{', '.join(sorted(rpc.PROPERTY_DEFAULTS))} set to true or false; nothing written")


class DbRpcPolicy:
    """rpc-proxy's policy in the OpenXT config DB, behind RpcPolicyPort."""

    def __init__(self, settings: RpcProxySettings | None = None) -> None:
        self.settings = settings or RpcProxySettings()

    @staticmethod
    def available(settings: RpcProxySettings) -> bool:
        """Whether this host has the config DB's client (an OpenXT dom0); without it there
        is no rpc-proxy policy to show or change."""
        return shutil.which(settings.db_cmd) is not None

    async def _db(self, *args: str) -> str:
        return await run_tool([self.settings.db_cmd, *args], timeout=self.settings.timeout)

    def _global_rules(self) -> str | None:
        try:
            return self.settings.rules_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    async def read(self) -> RpcPolicy:
        return policy_of(parse_ls(await self._db("ls", "-f", "/vm")), self._global_rules())

    async def set(self, uuid: str, policy: RpcVmPolicy) -> None:
        _checked(uuid, policy)
        base = f"/vm/{uuid}"
        await self._db("rm", f"{base}/{RULES_KEY}")
        for index, text in enumerate(policy.rules):
            await self._db("write", f"{base}/{RULES_KEY}/{index}", text)
        given = dict(policy.properties)
        for name in sorted(rpc.PROPERTY_DEFAULTS):
            if name in given:
                await self._db("write", f"{base}/{name}", "true" if given[name] else "false")
            else:
                await self._db("rm", f"{base}/{name}")
        self.reload()

    async def clear(self, uuid: str) -> None:
        _checked(uuid)
        base = f"/vm/{uuid}"
        await self._db("rm", f"{base}/{RULES_KEY}")
        for name in sorted(rpc.PROPERTY_DEFAULTS):
            await self._db("rm", f"{base}/{name}")
        self.reload()

    def reload(self) -> int:
        """SIGHUP every running rpc-proxy (its cache of rules is dropped, the DB read again
        on the next message); how many were signalled."""
        count = 0
        try:
            entries = sorted(os.listdir(self.settings.proc_root))
        except OSError as exc:
            raise TerminalHostError(f"cannot list {self.settings.proc_root} to find rpc-proxy and make it reload its "
                                    f"rules ({exc.strerror or exc}); the new rules are in the DB") from None
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                comm = (self.settings.proc_root / entry / "comm").read_text().rstrip("\n")
            except OSError:
                continue  # exited meanwhile, or not a process directory
            if comm != self.settings.process_name:
                continue
            try:
                os.kill(int(entry), signal.SIGHUP)
                count += 1
            except ProcessLookupError:
                continue
            except PermissionError:
                raise TerminalHostError(f"cannot send SIGHUP to rpc-proxy (pid {entry}): permission denied; run as "
                                        "root, or the new rules stay unenforced until rpc-proxy restarts") from None
        return count
