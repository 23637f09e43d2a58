"""`reconciler sim ...`: run the simulated host, and drive its toolstack by hand.

Composes drivers (this is the CLI layer). `serve` owns DIR in the foreground: the
xenstored on DIR/xenstored.sock, the host RPC on DIR/host.sock, saved on each change
(idle, it does nothing) and on SIGTERM/SIGINT (exit 0). The other sub-commands (`create`,
`list`, `destroy`, `shutdown`, `pause`, `unpause`, `crash`, `reboot`, `pci`, `fw`, `link`, `rpc`; the last
four also make drift by hand: a device rebound, a v4v entry inserted, appended or deleted, a
vif interface's MTU, promiscuous mode or offloads changed, a VM's rpc-proxy entry set or cleared) go through
`drivers.sim.open_sim`, so they work whether or not a `serve` runs. Output is sorted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import UsageError
from reconciler.model.host import FirewallEntry

if TYPE_CHECKING:
    from reconciler.ports import HostPorts

DEFAULT_STATE = ".reconciler/sim"
SHUTDOWN_TIMEOUT_S = 60.0  # libxl waits 60 s for a guest to acknowledge control/shutdown
_BY_NAME = {
    "destroy": "destroy at once (xl destroy): devices torn down, xenstore cleaned",
    "shutdown": "ask the guest to power off and wait until it is gone",
    "pause": "pause the domain",
    "unpause": "unpause the domain",
    "crash": "crash the guest now; the toolstack applies its onCrash as xl does",
    "reboot": "the guest reboots itself now; the domain stays shut down (reason reboot), as without xl's monitor",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sim", help="run or drive the embedded simulated host")
    sim_sub = parser.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)
    serve = sim_sub.add_parser(
        "serve",
        help="serve the simulated host in the foreground until SIGTERM/SIGINT",
        description="Serve the simulated host of DIR: its xenstored on DIR/xenstored.sock (point Xen's tools at "
        "it with XENSTORED_PATH=<printed path>) and its toolstack on DIR/host.sock.",
    )
    _state(serve)
    _create_arguments(_state(sim_sub.add_parser("create", help="create a domain with its devices (xl create)")))
    _state(sim_sub.add_parser("list", help="list the domains (xl list)"))
    for verb, text in _BY_NAME.items():
        sub = _state(sim_sub.add_parser(verb, help=text))
        sub.add_argument("name", metavar="NAME", help="domain name")
        if verb == "crash":
            sub.add_argument("--unhandled", action="store_true",
                             help="leave the domain crashed whatever its onCrash says, as a host where no xl "
                                  "process watches it (xl create -e) shows it")
        if verb == "shutdown":
            sub.add_argument("--timeout", type=float, default=SHUTDOWN_TIMEOUT_S, metavar="SECONDS",
                             help=f"how long to wait for the guest (default {SHUTDOWN_TIMEOUT_S:g})")
    pci = _state(sim_sub.add_parser("pci", help="list the host PCI devices and their drivers, or rebind one by hand"))
    how = pci.add_mutually_exclusive_group()
    how.add_argument("--bind", metavar="BDF", help="bind to pciback (xl pci-assignable-add)")
    how.add_argument("--unbind", metavar="BDF", help="give back to its driver (xl pci-assignable-remove -r)")
    fw = _state(sim_sub.add_parser("fw", help="list the v4v firewall table (viptables -L), or change it by hand"))
    how = fw.add_mutually_exclusive_group()
    how.add_argument("--insert", nargs=2, metavar=("POSITION", "RULE"), help='viptables -I, e.g. --insert 1 "-j ACCEPT"')
    how.add_argument("--append", metavar="RULE", help='viptables -A, e.g. --append "-j REJECT"')
    how.add_argument("--delete", metavar="RULE", help='viptables -D (the first equal entry), e.g. --delete "-j REJECT"')
    rpcp = _state(sim_sub.add_parser("rpc", help="list rpc-proxy's per-VM rules and properties, or change them by hand"))
    how = rpcp.add_mutually_exclusive_group()
    how.add_argument("--set", nargs="+", metavar=("UUID", "RULE"),
                     help='replace a VM\'s entry, e.g. --set UUID "allow destination com.citrix.xenclient.usbdaemon" '
                     "usb-control=true (words with = are properties)")
    how.add_argument("--clear", metavar="UUID", help="remove a VM's entry")
    link = _state(sim_sub.add_parser("link", help="list the vif interfaces (ip -d link, ethtool -k), or change one by hand"))
    link.add_argument("name", nargs="?", metavar="IFNAME", help="interface to change, e.g. vif1.0")
    link.add_argument("--backend", type=int, default=0, metavar="DOMID", help="its backend domain (default 0, dom0)")
    link.add_argument("--mtu", type=int, metavar="N", help="ip link set dev IFNAME mtu N")
    link.add_argument("--promisc", choices=("on", "off"), help="ip link set dev IFNAME promisc on|off")
    link.add_argument("--offload", action="append", default=[], metavar="KEY=on|off",
                      help="ethtool -K IFNAME KEY on|off (rx, tx, sg, tso, ufo, gso); repeatable")
    parser.set_defaults(run=run)


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="domain name (uuid derived from it, as for manifests)")
    parser.add_argument("--virt", choices=("pv", "pvh", "hvm"), required=True, help="virtualization mode")
    parser.add_argument("--memory", type=int, required=True, metavar="MIB", help="memory at boot, in MiB")
    parser.add_argument("--max-memory", type=int, metavar="MIB", help="balloon ceiling in MiB (default: --memory)")
    parser.add_argument("--vcpus", type=int, default=1, metavar="N", help="virtual CPUs online at boot (default 1)")
    parser.add_argument("--max-vcpus", type=int, metavar="N", help="virtual CPUs the domain may have (default: --vcpus)")
    parser.add_argument("--kernel", metavar="PATH", help="kernel image to boot (pv, pvh)")
    parser.add_argument("--disk", action="append", default=[], metavar="TARGET,VDEV[,FORMAT[,ro]]",
                        help="a disk, e.g. /var/lib/xen/db.img,xvda,raw,ro (format raw when omitted); repeatable")
    parser.add_argument("--nic", action="append", default=[], metavar="BRIDGE[,MAC]",
                        help="a NIC on BRIDGE, e.g. xenbr0 (MAC derived from the uuid when omitted); repeatable")
    parser.add_argument("--pci", action="append", default=[], metavar="BDF", help="made assignable if needed")
    parser.add_argument("--paused", action="store_true", help="leave the domain paused (xl create -p)")


def _state(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--state", metavar="DIR", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})")
    return parser


def run(args: argparse.Namespace) -> int:
    state = Path(args.state)
    if args.sim_command == "serve":
        return serve(state)
    commands: dict[str, Callable[[HostPorts, argparse.Namespace], Awaitable[None]]] = {
        "create": _create, "list": _list, "pci": _pci, "fw": _fw, "link": _link, "rpc": _rpc,
        **{verb: _by_name for verb in _BY_NAME},
    }
    command = commands.get(args.sim_command)
    if command is None:
        raise UsageError(f"unknown sim command {args.sim_command!r}")
    asyncio.run(_with_host(state, command, args))
    return 0


async def _with_host(state: Path, command: Callable[[HostPorts, argparse.Namespace], Awaitable[None]],
                     args: argparse.Namespace) -> None:
    from drivers.sim import open_sim

    async with open_sim(state) as host:
        await command(host, args)


def serve(state_dir: Path) -> int:
    """Serve until SIGTERM/SIGINT; everything is saved before returning 0."""
    asyncio.run(_serve(state_dir))
    return 0


async def _serve(state_dir: Path) -> None:
    from drivers.sim import settings as names
    from drivers.sim.host import SimHost

    host = await SimHost.open(state_dir)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        sock = host.dir / names.XENSTORE_SOCKET
        print(f"xenstored: listening on {sock}", flush=True)
        print(f"host: listening on {host.dir / names.HOST_SOCKET}", flush=True)
        print(f"export XENSTORED_PATH={sock}", flush=True)
        await host.run_until(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await host.close()
    print(f"xenstored: saved {len(host.store)} nodes to {host.dir / 'xenstore.json'}", file=sys.stderr, flush=True)


async def _create(host: HostPorts, args: argparse.Namespace) -> None:
    from drivers.sim.xlspec import CreateRequest, build
    from reconciler.model.host import Build, PciAssignment
    from reconciler.xenfmt import vdev_to_devid

    vm, disks, nics, pcis = build(CreateRequest(
        args.name, args.virt, args.memory, args.max_memory, args.vcpus, args.max_vcpus, args.kernel,
        args.disk, args.nic, args.pci))
    toolstack = host.toolstack
    drivers = {d.bdf: d.driver for d in await host.pciback.inventory()}
    for bdf in pcis:  # on pciback before the build, as xl needs (pci-assignable-add)
        if drivers.get(bdf) != "pciback":
            await host.pciback.assignable_add(bdf)
    # Built as xl builds: the devices are in the domain at create (the cfg's disk=, vif=, pci=).
    devices = Build(tuple(sorted(disks, key=lambda d: vdev_to_devid(d.spec.vdev))), tuple(nics),
                    tuple(PciAssignment(b) for b in sorted(set(pcis))))
    domid = await toolstack.create(vm, devices, paused=True)
    try:
        if not args.paused:
            await toolstack.unpause(domid)
    except BaseException:
        await toolstack.destroy(domid)  # as xl does when a create fails half-way
        raise
    print(f"created {vm.metadata.name} as domain {domid}{' (paused)' if args.paused else ''}")


async def _domid(host: HostPorts, name: str) -> int:
    for status in await host.toolstack.list_domains():
        if status.name == name:
            return status.domid
    raise UsageError(f"no domain named {name!r} on {host.name}; `reconciler sim list` shows them")


async def _by_name(host: HostPorts, args: argparse.Namespace) -> None:
    domid = await _domid(host, args.name)
    toolstack = host.toolstack
    if args.sim_command == "shutdown":
        await toolstack.shutdown(domid, timeout=args.timeout)
    elif args.sim_command in ("crash", "reboot"):
        from drivers.sim.client import SimToolstack

        if not isinstance(toolstack, SimToolstack):
            raise UsageError(f"sim {args.sim_command}: {host.name} cannot {args.sim_command} a domain on demand "
                             "(only a served or embedded simulated host can)")
        if args.sim_command == "crash":
            await toolstack.crash(domid, handled=not args.unhandled)
        else:
            await toolstack.reboot(domid)
    else:
        await {"destroy": toolstack.destroy, "pause": toolstack.pause, "unpause": toolstack.unpause}[args.sim_command](domid)
    print(f"{args.name}: {args.sim_command} done")


async def _list(host: HostPorts, args: argparse.Namespace) -> None:
    print(f"{'Name':<40} {'ID':>5} {'Mem':>5} {'VCPUs':>5}  State")
    for s in await host.toolstack.list_domains():
        print(f"{s.name:<40} {s.domid:>5} {s.memory_mib:>5} {s.vcpus:>5}  {s.power}")


async def _pci(host: HostPorts, args: argparse.Namespace) -> None:
    if args.bind:
        await host.pciback.assignable_add(args.bind)
    elif args.unbind:
        await host.pciback.assignable_remove(args.unbind, rebind=True)
    print(f"{'BDF':<13} {'Class':<7} {'Vendor:Device':<14} Driver")
    for d in await host.pciback.inventory():
        print(f"{d.bdf:<13} {d.pci_class:<7} {d.vendor[2:]}:{d.device[2:]:<9} {d.driver or '-'}")


def _rule(text: str) -> FirewallEntry:
    try:
        return FirewallEntry.parse(text)
    except ValueError as exc:
        raise UsageError(f"sim fw: {exc}") from None


async def _fw(host: HostPorts, args: argparse.Namespace) -> None:
    if args.insert:
        position, text = args.insert
        if not position.isdigit() or int(position) < 1:
            raise UsageError(f"sim fw --insert: position {position!r} must be a number from 1")
        await host.firewall.insert(_rule(text), int(position))
    elif args.append:
        await host.firewall.append(_rule(args.append))
    elif args.delete:
        await host.firewall.delete(_rule(args.delete))
    for position, entry in enumerate(await host.firewall.list(), start=1):
        print(f"{position:>3}  {entry}")


async def _rpc(host: HostPorts, args: argparse.Namespace) -> None:
    from reconciler.model.host import RpcVmPolicy

    if args.set:
        uuid, *words = args.set
        rules = [w for w in words if "=" not in w]
        properties: dict[str, bool] = {}
        for word in (w for w in words if "=" in w):
            name, _, value = word.partition("=")
            if value not in ("true", "false"):
                raise UsageError(f"sim rpc --set: property {word!r}: expected NAME=true or NAME=false")
            properties[name] = value == "true"
        await host.rpc.set(uuid, RpcVmPolicy(tuple(rules), tuple(sorted(properties.items()))))
    elif args.clear:
        await host.rpc.clear(args.clear)
    for uuid, entry in (await host.rpc.read()).vms.items():
        print(uuid)
        for number, rule in enumerate(entry.rules, start=1):
            print(f"{number:>3}  {rule}")
        for name, value in entry.properties:
            print(f"     {name}={'true' if value else 'false'}")


async def _link(host: HostPorts, args: argparse.Namespace) -> None:
    offloads: dict[str, str | int] = {}
    for item in args.offload:
        key, _, value = item.partition("=")
        if key not in ("rx", "tx", "sg", "tso", "ufo", "gso") or value not in ("on", "off"):
            raise UsageError(f"sim link --offload: expected KEY=on|off with KEY rx, tx, sg, tso, ufo or gso, found {item!r}")
        offloads[key] = value
    changes = args.mtu is not None or args.promisc is not None or offloads
    if changes and not args.name:
        raise UsageError("sim link: name the interface to change, e.g. `sim link vif1.0 --mtu 9000`")
    if changes:
        await host.netdev.set(args.backend, args.name, mtu=args.mtu,
                              promiscuous=None if args.promisc is None else args.promisc == "on", ethtool=offloads or None)
    print(f"{'Backend':>7}  {'Interface':<16} {'MTU':>5}  {'Promisc':<7}  Ethtool")
    for d in await host.netdev.list():
        settings = " ".join(f"{k}={v}" for k, v in sorted(d.ethtool.items()))
        print(f"{d.backend_domid:>7}  {d.name:<16} {d.mtu:>5}  {'on' if d.promiscuous else 'off':<7}  {settings}")
