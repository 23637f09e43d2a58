"""What "converged, with nothing duplicated or leaked" means, checked on what the host
shows: `reconciler sim list` (the hypervisor's domain list, duplicates included) and
`reconciler observe --format json` (managed markers, firewall table, pciback drivers,
rpc-proxy entries).

Pure: texts and parsed JSON in, a list of problems out (empty when all holds).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.convergence.manifests import ManifestSet

DOM0 = "Domain-0"


def listed_names(sim_list: str) -> list[str]:
    """Domain names from `reconciler sim list` (header line first), dom0 left out."""
    return [line.split()[0] for line in sim_list.splitlines()[1:] if line.strip() and line.split()[0] != DOM0]


def problems(mset: ManifestSet, observed: dict[str, Any], sim_list: str | None = None) -> list[str]:
    """Without `sim_list` the names come from `observe`, which cannot show a duplicate."""
    found: list[str] = []
    names = sorted(observed["domains"]) if sim_list is None else listed_names(sim_list)
    found += [f"domain {n!r} exists {c} times" for n, c in sorted(Counter(names).items()) if c > 1]
    expected = sorted([*mset.live(), *mset.stub_domains()])  # a stub domain is its guest's, built with it
    if sorted(set(names)) != expected:
        found.append(f"domains {sorted(set(names))}, expected the live VMs and their stub domains {expected}")
    domains: dict[str, dict[str, Any]] = observed["domains"]
    stubs = set(mset.stub_domains())
    found += [f"domain {n!r} is not managed (no record of the reconciler)" for n, d in sorted(domains.items())
              if not d.get("managed") and n not in stubs]
    table: list[str] = observed["firewall"]
    found += [f"firewall entry {e!r} is there {c} times" for e, c in sorted(Counter(table).items()) if c > 1]
    if not table or table[-1] != "-j REJECT" or table.count("-j REJECT") != 1:
        found.append(f"the default REJECT is not last and alone: {table}")
    policy = observed.get("rpc")
    if policy is not None:
        entries = {uuid: {"rules": e["rules"], "properties": e["properties"]} for uuid, e in policy["vms"].items()}
        if entries != mset.rpc_entries():
            found.append(f"rpc-proxy entries {entries}, expected the live VMs' rules and properties {mset.rpc_entries()}")
    else:
        found.append("observe shows no rpc-proxy policy")
    on_pciback = {d["bdf"] for d in observed["hostPci"] if d.get("driver") == "pciback"}
    if on_pciback != mset.bound():
        found.append(f"on pciback: {sorted(on_pciback)}, expected {sorted(mset.bound())} "
                     "(a live VM's devices and greedy rules')")
    return found
