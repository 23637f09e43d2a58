"""The digest of a desired state: what `apply --plan` checks the manifests against.

Pure: DesiredState -> `StateDigest` (a sha256 over everything, and a short digest per
VM so a refusal can name what changed). Called by the JSON plan renderer, which writes
it into the plan, and by `apply --plan`, which recomputes it from the manifests before
the host is opened.

Canonical and order-independent: every resource as `model_dump` (defaults
filled, camelCase), sorted by kind then name, keys sorted; where a resource was written
(file, line, document order) is not part of it, except the order of each VM's rpc-proxy
rules, which decides (`DesiredState.rpc_rules_of`). Secrets are part of the input but never
of the output in a guessable form: the secret values go through scrypt (salted with
the digest of everything else) before they are mixed in, so a plan file and the public
manifests do not make a cheap test for a guessed VNC password. Per-VM digests cover
the public fields only; a change the per-VM digests do not show is a secret's.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from reconciler.model.common import KINDS
from reconciler.model.state import DesiredState, Resource
from reconciler.model.vm import VM

VERSION = b"xen-reconciler/desired-state/1\n"
VM_DIGEST_HEX = 16  # 64 bits: only names what changed; the total digest is the check
# scrypt cost for the secrets: 16 MiB and ~50 ms once per plan, ~50 ms per guess.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


@dataclass(frozen=True)
class StateDigest:
    """`total`: sha256 hex of the whole desired state, secrets included (scrypt'ed).
    `vms`: VM name -> short digest of the public fields of the VM and its devices."""

    total: str
    vms: dict[str, str]

    def changed(self, other: StateDigest) -> str:
        """What differs from `other` (the one made earlier), as a phrase: 'VM db
        changed, VM web added', 'a secret (sensitive field) changed', or '' when equal."""
        if self.total == other.total:
            return ""
        names = sorted(set(self.vms) | set(other.vms))
        parts = [f"VM {name} {_how(other.vms.get(name), self.vms.get(name))}" for name in names
                 if self.vms.get(name) != other.vms.get(name)]
        return ", ".join(parts) or "a secret (sensitive field) changed"


def _how(before: str | None, after: str | None) -> str:
    return "added" if before is None else "removed" if after is None else "changed"


def _owner(resource: Resource) -> str:
    return resource.metadata.name if isinstance(resource, VM) else resource.spec.vm


# VM fields added after digests were first made, left out while at their (normalized)
# default, so a state that does not use them keeps the digest it had.
_LATER_VM_FIELDS: dict[str, object] = {"properties": {}, "rpcRules": [], "adopt": False}


def _dump(resource: Resource) -> dict[str, Any]:
    data = resource.model_dump(by_alias=True)
    if isinstance(resource, VM):
        spec = data["spec"]
        for key, default in _LATER_VM_FIELDS.items():
            if spec.get(key) == default:
                del spec[key]
    return data


def _dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _may_hold_secret(annotation: object) -> bool:
    """Whether a field of this type can hold a SecretStr, at any depth."""
    if isinstance(annotation, type):
        return issubclass(annotation, SecretStr) or (issubclass(annotation, BaseModel) and bool(_secret_fields(annotation)))
    return any(_may_hold_secret(arg) for arg in get_args(annotation))


@functools.cache
def _secret_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` that can hold a secret (most models have none: walking
    every field of 9,000 resources cost 0.2 s, this looks at a few per VM)."""
    return tuple(name for name, info in model.model_fields.items() if _may_hold_secret(info.annotation))


def _secrets(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every SecretStr below `value`, with its field path (model_dump hides them)."""
    if isinstance(value, SecretStr):
        yield path, value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name in _secret_fields(type(value)):
            yield from _secrets(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _secrets(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _secrets(item, f"{path}[{key}]")


def desired_digest(desired: DesiredState) -> StateDigest:
    """The digest of `desired` (see the module docstring)."""
    by_vm: dict[str, list[Any]] = {}
    secrets: list[tuple[str, str]] = []
    for kind in KINDS:
        for name, resource in sorted(desired.by_kind(kind).items()):
            by_vm.setdefault(_owner(resource), []).append(_dump(resource))
            secrets.extend(_secrets(resource, f"{kind}/{name}"))
    for vm in sorted({rule.spec.vm for rule in desired.rpc_rules.values()}):
        # rpc-proxy rules decide in order (the last match wins): reordering them is a change
        by_vm.setdefault(vm, []).append({"rpcOrder": [rule.metadata.name for rule in desired.rpc_rules_of(vm)]})
    public = hashlib.sha256(VERSION)
    vms: dict[str, str] = {}
    for vm, rows in sorted(by_vm.items()):
        whole = hashlib.sha256(_dumps(rows)).hexdigest()
        vms[vm] = whole[:VM_DIGEST_HEX]
        public.update(_dumps([vm, whole]) + b"\n")  # each VM's full sha256: the total keeps all 256 bits
    hidden = hashlib.scrypt(_dumps(secrets), salt=public.digest(), **_SCRYPT) if secrets else b""
    return StateDigest(hashlib.sha256(public.digest() + hidden).hexdigest(), vms)
