"""`reconciler import`: manifests for the domains another toolstack built (DESIGN 6).

Pure: `import_manifests` takes an ObservedState (a live host's or a captured dump's)
and returns the text of one manifest file per unmanaged domain, `<name>.yaml` -> text.
Each file holds one VM document with `adopt: true`, its uuid, and its devices nested
(`spec.disks`, `spec.nics`, `spec.pci`) in DESIGN 4's field names, holding exactly the
fields the observer set: what the host shows, so a plan against the same host finds
nothing to change. A header comment names the source and says what xenstore cannot
show (the reconciler's own settings, the device model's configuration, lifecycle
actions...) and which default the file therefore holds: under `adopt` those fields are
taken from the manifest unchecked and used when the domain is next built.

Where the source shows them (a live or simulated host; a dump does not), the domain's
v4v firewall entries come back as `v4vRules` that resolve to exactly those entries (an
entry and its inverse as one bidirectional rule), and its rpc-proxy entry as `rpcRules`
and `properties`: adopting a domain must not cut it off. What no rule can spell (a
domid no listed domain holds) is said in the header instead.

Not imported: dom0 (the host), domains the reconciler manages, a stub domain `<vm>-dm`
(it is its HVM guest's `stubdom.enabled`), and a domain without a VM model (xenstore
shows no memory for it: `skipped` says why). Secrets are never written: xenstore does
not hold a VNC password, and the header says to add one. A domain name the manifest
pattern refuses (`Web_1`) becomes a valid one (`web-1`), said in the header; the uuid
still ties the file to the domain.

The text is built with `yaml.safe_dump` from plain dicts in a fixed key order, so the
same host gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import yaml
from pydantic import BaseModel, SecretStr

from reconciler import rpc, v4v
from reconciler.errors import UsageError, printable
from reconciler.model.common import API_VERSION, NAME_PATTERN
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.host import FirewallEntry
from reconciler.model.observed import DomainInfo, ObservedState
from reconciler.model.vm import VM

_NAME = re.compile(NAME_PATTERN)
_STUB = "-dm"

# VM spec fields xenstore cannot show, with the default an imported manifest holds
# (DESIGN 4); the header lists the ones that apply to the domain's virt.
_UNOBSERVED_ALL = (
    ("type", "svm (a reconciler tag for v4v dom-type=; set the domain's role, e.g. ndvm)"),
    ("lifecycle", "onPoweroff destroy, onReboot restart, onCrash destroy"),
    ("power", "s3Mode pv, s4Mode pv"),
    ("flaskLabel", "none"),
    ("startPriority/shutdownPriority", "0"),
    ("dependsOn", "[] (add the VMs this one needs running first)"),
    ("bootSentinel", "none"),
    ("hooks", "none"),
    ("updatePolicy", "live"),
    ("pci seize/greedy", "seize true, greedy false"),
    ("nic model", "none (xl's)"),
)
_UNOBSERVED_HVM = (
    ("hvm", "unset: xl's defaults (pae, acpi, apic, nx, hpet on; viridian off)"),
    ("boot", "cd"),
    ("display", "type none"),
    ("serial", "none"),
)
_UNOBSERVED_PV = (
    ("display", "type none"),
)


def import_manifests(observed: ObservedState, names: Sequence[str] | None = None, *,
                     source: str) -> dict[str, str]:
    """`<name>.yaml` -> manifest text for every unmanaged domain (only `names`, given as
    the domain's name or its manifest name, when set), in manifest-name order.

    Raises UsageError naming the importable domains when a name in `names` is not one."""
    manifest_names = _manifest_names(observed)
    chosen = sorted(manifest_names, key=lambda dom: manifest_names[dom])
    if names is not None:
        by_either = {**{manifest_names[d]: d for d in chosen}, **{d: d for d in chosen}}
        unknown = [n for n in names if n not in by_either]
        if unknown:
            listed = ", ".join(printable(manifest_names[d]) for d in chosen) or "none"
            raise UsageError(f"--vm {printable(unknown[0])}: not an unmanaged domain of {printable(source)}; "
                             f"unmanaged domains: {listed}")
        wanted = {by_either[n] for n in names}
        chosen = [d for d in chosen if d in wanted]
    backends = _backend_domains(observed)
    rules = _firewall_rules(observed, {dom: manifest_names[dom] for dom in chosen})
    return {f"{manifest_names[dom]}.yaml": _manifest(observed, dom, manifest_names, backends, rules.get(dom, ([], [])),
                                                     source)
            for dom in chosen}


def skipped(observed: ObservedState) -> dict[str, str]:
    """Unmanaged domains no manifest can be written for -> why, by domain name."""
    out: dict[str, str] = {}
    for name, info in observed.domains.items():
        if not _candidate(observed, name, info) or name in observed.vms:
            continue
        out[name] = (f"domain {info.domid} ({name!r}) has no readable memory in xenstore"
                     + (" (its /local/domain tree is gone)" if info.xenstore_gone else "")
                     + ": no manifest written for it")
    return dict(sorted(out.items()))


def _candidate(observed: ObservedState, name: str, info: DomainInfo) -> bool:
    """Unmanaged, and not the stub domain of a listed HVM guest."""
    if info.managed or info.domid == 0:
        return False
    return not (name.endswith(_STUB) and name.removesuffix(_STUB) in observed.domains)


def _manifest_names(observed: ObservedState) -> dict[str, str]:
    """Domain name -> manifest name for every importable domain; a name the manifest
    pattern refuses is made valid, and clashes get the domid appended."""
    doms = {n: i for n, i in observed.domains.items() if _candidate(observed, n, i) and n in observed.vms}
    out: dict[str, str] = {}
    taken = {n for n in observed.domains if _NAME.fullmatch(n)}
    for name in sorted(doms, key=lambda n: (not _NAME.fullmatch(n), n)):
        if _NAME.fullmatch(name):
            out[name] = name
            continue
        base = valid_name(name, doms[name].domid)
        candidate = base if base not in taken else valid_name(f"{base}-{doms[name].domid}", doms[name].domid)
        taken.add(candidate)
        out[name] = candidate
    return out


def valid_name(name: str, domid: int) -> str:
    """A manifest name for a domain name: lower case, runs of other characters as `-`,
    at most 63 characters; `domain-<domid>` when nothing is left."""
    text = re.sub(r"[^a-z0-9]+", "-", name.lower())[:63].strip("-")
    return text or f"domain-{domid}"


def _backend_domains(observed: ObservedState) -> set[str]:
    """Domains that serve another domain's disk or NIC backend."""
    pairs = [(d.spec.vm, d.spec.backend_vm) for d in observed.disks.values()]
    pairs += [(n.spec.vm, n.spec.backend_vm) for n in observed.nics.values()]
    return {backend for vm, backend in pairs if backend and backend != vm}


def _fields(model: BaseModel) -> dict[str, object]:
    """The fields the observer set, in model order, by their YAML names; secrets and
    nested device lists never; nested models likewise. Works on models built
    unvalidated (`model_construct`) from host values that break a manifest rule."""
    out: dict[str, object] = {}
    for name, info in type(model).model_fields.items():
        if name not in model.model_fields_set:
            continue
        value = getattr(model, name)
        if value is None or isinstance(value, SecretStr):
            continue
        if isinstance(value, BaseModel):
            value = _fields(value)
        out[info.alias or name] = value
    return out


def _devices(observed: ObservedState, dom: str, names: Mapping[str, str]) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    groups: tuple[tuple[str, Mapping[str, Disk] | Mapping[str, NIC] | Mapping[str, PCIPassthrough]], ...] = (
        ("disks", observed.disks), ("nics", observed.nics), ("pci", observed.pci))
    for key, table in groups:
        items: list[tuple[tuple[int, str], dict[str, object]]] = []
        for dev_name, dev in table.items():
            if dev.spec.vm != dom:
                continue
            spec = _fields(dev.spec)
            spec.pop("vm", None)
            if isinstance(spec.get("backendVM"), str):
                backend = str(spec["backendVM"])
                spec["backendVM"] = names.get(backend, valid_name(backend, 0))
            if isinstance(spec.get("guestSlot"), int):
                spec["guestSlot"] = f"0x{spec['guestSlot']:02x}"
            items.append((_order(dev_name), spec))
        if items:
            out[key] = [spec for _, spec in sorted(items, key=lambda item: item[0])]
    return out


def _order(dev_name: str) -> tuple[int, str]:
    """Observed device names end in their devid (PCI: index): sort by that number."""
    tail = dev_name.rpartition("-")[2]
    return (int(tail), dev_name) if tail.isdigit() else (1 << 30, dev_name)


def _manifest(observed: ObservedState, dom: str, names: Mapping[str, str], backends: set[str],
              rules: tuple[list[str | dict[str, object]], list[str]], source: str) -> str:
    vm: VM = observed.vms[dom]
    info = observed.domains[dom]
    spec = _fields(vm.spec)
    spec.pop("adopt", None)
    if info.uuid is not None:
        spec["uuid"] = info.uuid
    ordered: dict[str, object] = {"adopt": True}
    if "uuid" in spec:
        ordered["uuid"] = spec.pop("uuid")
    ordered["virt"] = spec.pop("virt")
    if info.power == "paused":
        ordered["state"] = "paused"
    ordered.update(spec)
    if vm.spec.virt != "hvm" and not vm.spec.kernel:
        ordered["bootloader"] = "pygrub"  # a pv/pvh VM needs kernel or bootloader to validate; the header says
    notes: list[str] = []
    stub = observed.vms.get(f"{dom}{_STUB}")
    if vm.spec.virt == "hvm" and f"{dom}{_STUB}" in observed.domains:
        ordered["stubdom"] = {"enabled": True, **({"memory": stub.spec.memory} if stub is not None else {})}
        notes.append(f"stubdom: enabled, as {dom}{_STUB} runs its device model")
    if dom in backends:
        ordered["providesNetworkBackend"] = True
        notes.append("providesNetworkBackend: true, as it serves another domain's disk or NIC backend")
    policy, policy_notes = _rpc_policy(observed, info)
    if "properties" in policy:
        ordered["properties"] = policy.pop("properties")
    ordered.update(_devices(observed, dom, names))
    v4v_rules, v4v_notes = rules
    if v4v_rules:
        ordered["v4vRules"] = v4v_rules
    ordered.update(policy)
    notes += v4v_notes + policy_notes
    if observed.firewall is None:
        notes.append("v4vRules: none; this source cannot show the v4v firewall table (a captured dump)")
    if observed.rpc is None:
        notes.append("rpcRules/properties: none; this source cannot show rpc-proxy's policy (a captured dump)")
    document = {"apiVersion": API_VERSION, "kind": "VM", "metadata": {"name": names[dom]}, "spec": ordered}
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)
    return _header(observed, dom, info, names, notes, source, vm.spec.virt) + body


def _firewall_rules(observed: ObservedState, names: Mapping[str, str]
                    ) -> dict[str, tuple[list[str | dict[str, object]], list[str]]]:
    """v4v rules that resolve to exactly the ACCEPT entries of the viptables table that
    involve an imported domain (or its stub domain), by domain name, with notes on the
    entries no rule can spell. An entry and its inverse make one bidirectional rule, the
    domain as client; a lone entry a `bidirectional: false` one. Entries between two
    imported domains go to the client's manifest."""
    out: dict[str, tuple[list[str | dict[str, object]], list[str]]] = {}
    if observed.firewall is None:
        return out
    by_domid = {info.domid: name for name, info in observed.domains.items()}
    own = {observed.domains[dom].domid: dom for dom in names}
    stubs = {observed.domains[f"{dom}{_STUB}"].domid: dom for dom in names if f"{dom}{_STUB}" in observed.domains}
    owners = {**own, **stubs}
    table = {_key(e) for e in observed.firewall if e.target == "ACCEPT"}
    done: set[tuple[int | None, ...]] = set()
    for key in sorted(table, key=lambda k: tuple((v is not None, v or 0) for v in k)):
        if key in done:
            continue
        a, b, pa, pb = key
        owner = owners.get(a) if a is not None and a in owners else owners.get(b) if b is not None else None
        if owner is None:
            continue
        inverse = (b, a, pb, pa)
        pair = inverse in table and inverse not in done and inverse != key
        if pair and not (a in owners and owners[a] == owner):
            key, inverse = inverse, key  # the imported domain as the client
            a, b, pa, pb = key
        done.update({key, inverse} if pair else {key})
        rules, notes = out.setdefault(owner, ([], []))
        client = _endpoint(a, pa, owner, observed, by_domid, names)
        server = _endpoint(b, pb, owner, observed, by_domid, names)
        entry = str(FirewallEntry(*key))
        if client is None or server is None:
            notes.append(f"firewall entry not imported ({entry}): no v4v rule names that domain (a numeric domid)")
            continue
        text = v4v.canonical(f"{client} -> {server}")
        rules.append(text if pair else {"rule": text, "bidirectional": False})
    return out


def _key(entry: FirewallEntry) -> tuple[int | None, int | None, int | None, int | None]:
    return entry.dom_in, entry.dom_out, entry.port_in, entry.port_out


def _endpoint(domid: int | None, port: int | None, owner: str, observed: ObservedState, by_domid: Mapping[int, str],
              names: Mapping[str, str]) -> str | None:
    """A viptables domid as a v4v endpoint of `owner`'s rule; None when no rule can name it."""
    if domid is None:
        domain = "*"
    elif domid == 0:
        domain = "0"
    elif domid == observed.domains[owner].domid:
        domain = "myself"
    elif by_domid.get(domid) == f"{owner}{_STUB}":
        domain = "my-stubdom"
    else:
        other = by_domid.get(domid)
        info = observed.domains.get(other or "")
        if other is None or info is None or (other.endswith(_STUB) and other.removesuffix(_STUB) in observed.domains):
            return None  # unlisted, or another guest's stub domain (the firewall folds it into its guest)
        if _NAME.fullmatch(other):
            domain = f"dom-name={other}"
        elif info.uuid is not None:
            domain = info.uuid
        else:
            return None
    return domain if port is None else f"{domain}:{port}"


def _rpc_policy(observed: ObservedState, info: DomainInfo) -> tuple[dict[str, object], list[str]]:
    """`rpcRules` and `properties` from rpc-proxy's entry for the domain's uuid, with notes
    on what a manifest cannot hold."""
    if observed.rpc is None or info.uuid is None or info.uuid not in observed.rpc.vms:
        return {}, []
    entry = observed.rpc.vms[info.uuid]
    out: dict[str, object] = {}
    notes: list[str] = []
    rules: list[str] = []
    for text in entry.rules:
        try:
            rules.append(rpc.canonical(text))
        except ValueError as exc:
            notes.append(f"rpc-proxy rule not imported ({text}): {exc}")
    properties = {key: value for key, value in entry.properties if key in rpc.PROPERTY_DEFAULTS}
    notes += [f"rpc-proxy property not imported ({key}): not one of xenmgr's boolean properties"
              for key, _ in entry.properties if key not in rpc.PROPERTY_DEFAULTS]
    if properties:
        out["properties"] = dict(sorted(properties.items()))
    if rules:
        out["rpcRules"] = rules
    return out, notes


def _header(observed: ObservedState, dom: str, info: DomainInfo, names: Mapping[str, str], notes: list[str],
            source: str, virt: str) -> str:
    lines = [
        f"Imported by `reconciler import` from {source}: domain {dom!r}"
        + (f", uuid {info.uuid}." if info.uuid else ", no uuid shown (the diff matches it by name)."),
        "adopt: true takes this domain over as it runs (`<= adopt` in the plan): nothing is restarted.",
    ]
    if names[dom] != dom:
        # With its uuid the plan renames the domain (xl rename) and adopts it; without one nothing
        # matches the file to the domain, and the plan would build a second domain from it.
        if info.uuid:
            lines.append(f"Renamed: {dom!r} is not a manifest name (lower-case letters, digits, '-'); named "
                         f"{names[dom]!r} here, matched by its uuid: the plan renames the domain first (xl rename, "
                         "live: `~ metadata.name` on the adopt line), then adopts it.")
        else:
            lines.append(f"Renamed: {dom!r} is not a manifest name (lower-case letters, digits, '-'); named "
                         f"{names[dom]!r} here. With no uuid shown nothing ties this file to the domain: the plan "
                         f"would CREATE a second domain {names[dom]!r} on the same disks; rename the domain first "
                         f"with `xl rename {dom} {names[dom]}` (live, nothing restarts).")
    lines += notes
    lines.append("Not observable in xenstore, so this file holds the default (adopt takes it unchecked;")
    lines.append("it is used when the domain is next built, so check it):")
    unobserved = [*_UNOBSERVED_ALL, *(_UNOBSERVED_HVM if virt == "hvm" else _UNOBSERVED_PV)]
    vm = observed.vms[dom]
    if virt == "hvm" and f"{dom}{_STUB}" not in observed.domains:
        unobserved.append(("stubdom", "disabled (no stub domain runs)"))
    if virt != "hvm" and not vm.spec.kernel:
        unobserved.append(("bootloader", "pygrub, a PLACEHOLDER: xenstore shows no kernel for this domain nor its "
                           "bootloader; set the real kernel/ramdisk/cmdline or bootloader"))
    elif virt != "hvm":
        unobserved.append(("bootloader", "none (the kernel shown in /vm/<uuid>/image is used)"))
    lines += [f"  {field}: {default}" for field, default in unobserved]
    lines.append("Secrets are never written: if the domain has a VNC password, add display.vncPassword yourself.")
    problems = [p for p in observed.problems if _about(p, dom, info) and not (names[dom] != dom and "not a manifest name" in p)]
    if problems:
        lines.append("What the observer found odd about this domain:")
        lines += [f"  {p}" for p in problems]
    return "".join(f"# {printable(line)}\n" for line in lines)


def _about(problem: str, dom: str, info: DomainInfo) -> bool:
    return (f"{dom!r}" in problem or f"/local/domain/{info.domid}/" in problem
            or f"/libxl/{info.domid}/" in problem or f"domain {info.domid} " in problem)
