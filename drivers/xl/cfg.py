"""Render a VM manifest as an xl.cfg file (reference xen.md 3.1-3.2): pure.

In: a `VM` model and the `Build` (its disks, NICs, PCI devices: `reconciler.build.build_of`).
Out: the file text, one `key = value` per line, and the secrets it holds (for scrubbing
messages). The domain is built as xl builds one (DESIGN section 5): its devices are in
the cfg, `disk = [...]` (xl-disk-configuration(5), each option a `key=value`, `target=`
last as it swallows commas), `vif = [...]` (xl-network-configuration(5)), `pci = [...]`
(BDF[@slot] with options, xl.cfg(5)) and `passthrough = "enabled"` when there is a PCI
device (what libxl picks then; written so the cfg says it). The spec strings are the
ones `xl block-attach`/`network-attach`/`pci-attach` take (`drivers.xl.specs`). Called by
`drivers.xl.toolstack.XlToolstack.create`, which writes the text to a private 0600 file.

Mapping (manifest -> xl.cfg): name, uuid (default: the project uuid5 of the name),
virt -> type, memory, maxMemory -> maxmem, vcpus, maxVcpus -> maxvcpus,
kernel/ramdisk/cmdline/bootloader, lifecycle -> on_poweroff/on_reboot/on_crash,
flaskLabel -> seclabel. hvm only: boot, hvm.* -> pae/acpi/apic/nx/viridian/hpet/
timer_mode/videoram, serial, stubdom -> device_model_stubdomain_override +
stubdomain_memory, display -> vnc/vnclisten/vncpasswd/sdl (vnc=0 written explicitly,
as xl enables VNC for HVM by default). pv/pvh: a vnc/sdl display becomes a PV
framebuffer `vfb = [...]` when `pvVnc` is true (the default), none otherwise.
Not in xl.cfg (handled elsewhere or not by xl): power s3/s4 modes, hooks, xenstoreData,
bootSentinel, install, priorities, dependsOn.
"""

from __future__ import annotations

from drivers.xl.specs import disk_spec, pci_spec, vif_spec
from reconciler.errors import TerminalHostError
from reconciler.model.common import default_vm_uuid
from reconciler.model.host import Build
from reconciler.model.vm import VM, VMSpec

Value = str | int | bool | list[str]
Entries = list[tuple[str, Value]]


class CfgValueError(TerminalHostError):
    """A manifest value cannot be written into xl.cfg (control characters, spec commas)."""


def _quote(key: str, text: str, *, secret: bool = False) -> str:
    """An xl.cfg string: double quotes, `\\` and `"` escaped (libxlu dequotes them)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        shown = "(sensitive)" if secret else repr(text)
        raise CfgValueError(
            f"xl.cfg key {key}: value {shown} holds control characters (newline, tab...), "
            "which an xl.cfg string cannot carry; remove them from the manifest"
        )
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format(key: str, value: Value, secrets: frozenset[str]) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[ " + ", ".join(_format(key, item, secrets) for item in value) + " ]"
    return _quote(key, value, secret=any(secret in value for secret in secrets))


def _domain(vm: VM) -> Entries:
    spec = vm.spec
    entries: Entries = [
        ("name", vm.metadata.name),
        ("uuid", spec.uuid or default_vm_uuid(vm.metadata.name)),
        ("type", spec.virt),
        ("memory", spec.memory),
        ("maxmem", spec.max_memory or spec.memory),
        ("vcpus", spec.vcpus),
        ("maxvcpus", spec.max_vcpus or spec.vcpus),
    ]
    for key, text in (("kernel", spec.kernel), ("ramdisk", spec.ramdisk),
                      ("cmdline", spec.cmdline), ("bootloader", spec.bootloader),
                      ("seclabel", spec.flask_label)):
        if text is not None:
            entries.append((key, text))
    life = spec.lifecycle
    entries += [("on_poweroff", life.on_poweroff), ("on_reboot", life.on_reboot), ("on_crash", life.on_crash)]
    return entries


def _hvm(spec: VMSpec) -> Entries:
    entries: Entries = [("boot", spec.boot or "cd")]
    if spec.hvm is not None:
        opts = spec.hvm
        for key, flag in (("pae", opts.pae), ("acpi", opts.acpi), ("apic", opts.apic),
                          ("nx", opts.nx), ("viridian", opts.viridian), ("hpet", opts.hpet)):
            if flag is not None:
                entries.append((key, flag))
        if opts.timer_mode is not None:
            entries.append(("timer_mode", opts.timer_mode))
        if opts.videoram is not None:
            entries.append(("videoram", opts.videoram))
    if spec.serial is not None:
        entries.append(("serial", spec.serial))
    if spec.stubdom is not None and spec.stubdom.enabled:
        entries += [("device_model_stubdomain_override", True), ("stubdomain_memory", spec.stubdom.memory)]
    return entries


def _password(spec: VMSpec) -> str | None:
    secret = spec.display.vnc_password
    return secret.get_secret_value() if secret is not None else None


def _hvm_display(spec: VMSpec) -> Entries:
    display = spec.display
    entries: Entries = [("vnc", display.type == "vnc"), ("sdl", display.type == "sdl")]
    if display.type == "vnc":
        entries.append(("vnclisten", display.vnc_listen))
        password = _password(spec)
        if password is not None:
            entries.append(("vncpasswd", password))
    return entries


def _pv_display(spec: VMSpec) -> Entries:
    display = spec.display
    if display.type == "none" or not display.pv_vnc:
        return []
    if display.type == "sdl":
        return [("vfb", ["sdl=1"])]
    parts = ["vnc=1", f"vnclisten={display.vnc_listen}"]
    password = _password(spec)
    if password is not None:
        if "," in password or "=" in password:
            raise CfgValueError(
                "display.vncPassword of a pv/pvh VM cannot contain ',' or '=': it goes into "
                "xl's vfb spec string, which has no escaping; choose another password"
            )
        parts.append(f"vncpasswd={password}")
    return [("vfb", [",".join(parts)])]


def _devices(build: Build) -> Entries:
    entries: Entries = []
    if build.disks:
        entries.append(("disk", [", ".join(disk_spec(disk)) for disk in build.disks]))
    if build.nics:
        entries.append(("vif", [", ".join(vif_spec(nic)) for nic in build.nics]))
    if build.pci:
        entries.append(("pci", [pci_spec(p.bdf, permissive=p.permissive, msitranslate=p.msitranslate,
                                         power_mgmt=p.power_mgmt, guest_slot=p.guest_slot) for p in build.pci]))
        entries.append(("passthrough", "enabled"))
    return entries


def render_cfg(vm: VM, build: Build = Build()) -> tuple[str, frozenset[str]]:
    """The xl.cfg text for `vm` built with `build`, and the secrets in it (to scrub from xl's messages)."""
    spec = vm.spec
    entries = _domain(vm)
    if spec.virt == "hvm":
        entries += _hvm(spec) + _hvm_display(spec)
    else:
        entries += _pv_display(spec)
    entries += _devices(build)
    password = _password(spec)
    secrets = frozenset([password] if password else [])
    lines = [f"{key} = {_format(key, value, secrets)}" for key, value in entries]
    header = f"# xl.cfg for VM {vm.metadata.name}, written by xen-reconciler; removed after `xl create`\n"
    return header + "\n".join(lines) + "\n", secrets
