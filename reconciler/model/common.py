"""Building blocks shared by every manifest kind: the base model, names, units, secrets.

Pure: these are value types. The loader validates YAML documents into them and the
observer builds them from xenstore, so desired and observed state compare like with like.
"""

from __future__ import annotations

import re
import uuid as _uuid
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

API_VERSION: Final = "xen.reconciler/v1"

# uuid5 namespace for VMs without an explicit uuid: uuid5(NAMESPACE_DNS, "xen.reconciler").
# Fixed forever: changing it would change every defaulted VM identity.
PROJECT_NAMESPACE = _uuid.UUID("daa1439f-09a4-57fb-8370-1d99bab1fcd8")

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MEMORY_PATTERN = r"^[0-9]+(Mi|Gi)?$"
TAG_PATTERN = r"^[a-z0-9]+$"
BOOT_PATTERN = r"^[cdn]+$"
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB: past anything Xen 4.17 supports on one host.

# Human wording for the patterns above, used when a value does not match.
PATTERN_WORDS: dict[str, str] = {
    NAME_PATTERN: "a name of 1-63 lower-case letters, digits and '-', starting and ending "
    "with a letter or digit",
    UUID_PATTERN: "a UUID like 0b7c1a52-3c1e-4d6a-9f5e-2f0e8b1d7c44",
    MEMORY_PATTERN: "an integer MiB or a string like '512Mi' or '2Gi'",
    TAG_PATTERN: "a lower-case tag of letters and digits, like svm or ndvm",
    BOOT_PATTERN: "boot order letters c (disk), d (cdrom), n (network), like 'cd'",
}


# Titles editors show on hover: a model's own words ("VM spec", not "VMSpec"); a field's
# title is its YAML name ("onCrash", not "Oncrash").
MODEL_TITLES: dict[str, str] = {
    "VMSpec": "VM spec", "HvmOptions": "hvm options", "PciMatch": "PCI match",
    "NestedRPCRule": "nested rpc rule", "NestedV4VRule": "nested v4v rule", "NestedPCI": "nested PCI rule",
    "NestedNIC": "nested NIC", "NICSpec": "NIC spec", "PCISpec": "PCIPassthrough spec",
    "RPCRuleSpec": "RPCRule spec", "V4VRuleSpec": "V4VRule spec",
}


def _model_title(model: type) -> str:
    """`DiskSpec` -> "Disk spec", `Lifecycle` -> "lifecycle", a kind is itself; MODEL_TITLES
    first. Called when a schema is generated, after KINDS (below) is defined."""
    name = model.__name__
    if name in MODEL_TITLES:
        return MODEL_TITLES[name]
    words = re.findall(r"[A-Z][a-z0-9]*", name)
    if name in KINDS or not words:
        return name
    first = words[0] if words[0] in KINDS else words[0].lower()
    return " ".join([first, *(w.lower() for w in words[1:])])


def _field_title(name: str, info: Any) -> str:
    alias = getattr(info, "alias", None)
    return alias if isinstance(alias, str) else to_camel(name)


class Model(BaseModel):
    """Base of every manifest model: immutable, strict types, unknown fields rejected.

    Python names are snake_case; YAML and JSON use the camelCase names of DESIGN.md.
    Every field carries a `description` (what it does, its default): editors show it.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=False,
        model_title_generator=_model_title,
        field_title_generator=_field_title,
    )


def default_vm_uuid(name: str) -> str:
    """The stable identity of a VM whose manifest names no uuid."""
    return str(_uuid.uuid5(PROJECT_NAMESPACE, name))


def _parse_mib(value: Any) -> Any:
    """`512`, `"512"`, `"512Mi"`, `"2Gi"` -> MiB as int; anything else is left for the
    strict int check to reject with a clear message."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = re.fullmatch(MEMORY_PATTERN, value.strip())
        if match and len(value.strip()) > 20:  # int() of > 4300 digits raises; anything > 20 is over the maximum
            raise ValueError(f"expected at most {MAX_MEMORY_MIB} MiB, found a number of {len(value.strip())} characters")
        if not match:
            raise ValueError(f"expected an integer MiB or a string like '512Mi' or '2Gi', found {value!r}")
        number = int(value.strip().removesuffix("Mi").removesuffix("Gi"))
        return number * 1024 if value.strip().endswith("Gi") else number
    return value


MiB = Annotated[
    int,
    BeforeValidator(_parse_mib),
    Field(ge=1, le=MAX_MEMORY_MIB),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_MEMORY_MIB},
                {"type": "string", "pattern": MEMORY_PATTERN},
            ],
            "description": "MiB as an integer, or a string with unit Mi or Gi ('512Mi', '2Gi')",
        }
    ),
]

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
UuidStr = Annotated[str, StringConstraints(pattern=UUID_PATTERN), AfterValidator(str.lower)]


def _render_secret(value: SecretStr) -> str:
    return "(sensitive)"


# A secret never prints: repr, str, model_dump and JSON all show "(sensitive)".
Secret = Annotated[SecretStr, PlainSerializer(_render_secret, return_type=str)]

SECRET_FIELDS = frozenset({"vncPassword"})


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"expected an absolute path, found {value!r}")
    if "\0" in value or any(part == ".." for part in value.split("/")):
        raise ValueError(f"expected a plain absolute path without '..', found {value!r}")
    return value


AbsPath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=4096),
    AfterValidator(_absolute_path),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/"}),
]


class Metadata(Model):
    """`metadata` of every document: the unique name (per kind) and optional labels."""

    name: Name = Field(description="The resource's name, unique per kind: 1-63 lower-case letters, digits and '-', "
                       "starting and ending with a letter or digit. VMs are referred to by it (`vm`, `backendVM`, "
                       "`dependsOn`).")
    labels: dict[str, str] = Field({}, description="Optional string map for your own grouping; not used by the reconciler. "
                                   "Default: {}.")


class ResourceBase(Model):
    """The header every document shares; each kind narrows `kind` and adds its `spec`."""

    api_version: Literal["xen.reconciler/v1"] = Field(API_VERSION, alias="apiVersion",
                                                      description="Always xen.reconciler/v1.")
    kind: str = Field(description="The kind of resource: VM, Disk, NIC, PCIPassthrough, V4VRule or RPCRule.")
    metadata: Metadata = Field(description="The document's name (unique per kind) and optional labels.")


PowerState = Literal["running", "stopped", "paused"]
Kind = Literal["VM", "Disk", "NIC", "PCIPassthrough", "V4VRule", "RPCRule"]
KINDS: tuple[Kind, ...] = ("VM", "Disk", "NIC", "PCIPassthrough", "V4VRule", "RPCRule")
