"""Velero server configuration, read the way the real server reads it: from its Deployment.

The version comes from the container image tag, the flags from the container args
(`server --features= --uploader-type=kopia ...`). Defaults are those of pkg/cmd/server/config.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string (`720h`, `1h30m`, `10m0s`, `0`)."""
    s = str(text).strip()
    if s in ("0", ""):
        return timedelta(0)
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"time: invalid duration {text!r}")
    return timedelta(seconds=sign * total)


def format_duration(d: timedelta) -> str:
    """Format like Go's time.Duration.String() for whole seconds (`720h0m0s`, `10m0s`, `1.5s`)."""
    total = d.total_seconds()
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    sec = f"{seconds:.9f}".rstrip("0").rstrip(".")
    if hours:
        return f"{sign}{int(hours)}h{int(minutes)}m{sec}s"
    if minutes:
        return f"{sign}{int(minutes)}m{sec}s"
    return f"{sign}{sec}s"


# The default restore priorities of pkg/cmd/server/config (section 6.4): high list, "-", low list.
DEFAULT_RESTORE_PRIORITIES = (
    "customresourcedefinitions,namespaces,storageclasses,volumesnapshotclass.snapshot.storage.k8s.io,"
    "volumesnapshotcontents.snapshot.storage.k8s.io,volumesnapshots.snapshot.storage.k8s.io,"
    "datauploads.velero.io,persistentvolumes,persistentvolumeclaims,clusterroles,roles,serviceaccounts,"
    "clusterrolebindings,rolebindings,secrets,configmaps,limitranges,priorityclasses,pods,replicasets.apps,"
    "clusterclasses.cluster.x-k8s.io,endpoints,services,-,clusterbootstraps.run.tanzu.vmware.com,"
    "clusters.cluster.x-k8s.io,clusterresourcesets.addons.cluster.x-k8s.io,apps.kappctrl.k14s.io,"
    "packageinstalls.packaging.carvel.dev"
)


def _parse_bool(value: str) -> bool:
    return str(value).strip().lower() in ("1", "t", "true", "y", "yes")


@dataclass
class ServerConfig:
    version: str = "v1.18.0"
    image: str = "velero/velero:v1.18.0"
    namespace: str = "velero"
    features: list[str] = field(default_factory=list)
    uploader_type: str = "kopia"
    default_backup_ttl: timedelta = timedelta(hours=720)
    default_backup_storage_location: str = "default"
    backup_sync_period: timedelta = timedelta(minutes=1)
    store_validation_frequency: timedelta = timedelta(minutes=1)
    garbage_collection_frequency: timedelta = timedelta(hours=1)
    default_volumes_to_fs_backup: bool = False
    default_snapshot_move_data: bool = False
    fs_backup_timeout: timedelta = timedelta(hours=4)
    default_item_operation_timeout: timedelta = timedelta(hours=4)
    resource_timeout: timedelta = timedelta(minutes=10)
    terminating_resource_timeout: timedelta = timedelta(minutes=10)
    restore_resource_priorities: str = DEFAULT_RESTORE_PRIORITIES
    default_volume_snapshot_locations: dict[str, str] = field(default_factory=dict)
    disable_controllers: list[str] = field(default_factory=list)
    restore_only: bool = False
    schedule_skip_immediately: bool = False
    concurrent_backups: int = 1
    plugins: list[str] = field(default_factory=list)   # init-container images (velero install --plugins)
    args: list[str] = field(default_factory=list)       # raw container args
    unknown_flags: list[str] = field(default_factory=list)

    def feature_enabled(self, name: str) -> bool:
        return name in self.features

    def controller_enabled(self, name: str) -> bool:
        """`--disable-controllers` and `--restore-only` as the real server applies them."""
        if name in self.disable_controllers:
            return False
        if self.restore_only and name in (
            "backup", "backup-deletion", "backup-finalizer", "backup-operations", "gc", "schedule"
        ):
            return False
        return True

    @property
    def restore_priorities(self) -> tuple[list[str], list[str]]:
        items = [p for p in self.restore_resource_priorities.split(",") if p]
        if "-" in items:
            i = items.index("-")
            return items[:i], items[i + 1:]
        return items, []


IMAGE_RE = re.compile(r"^(?:.*/)?velero:(?P<tag>[^:/@]+)(?:@.*)?$")


def image_tag(image: str) -> str | None:
    """`velero/velero:v1.18.0` or `<registry>/<path>/velero:<tag>` -> tag, else None."""
    m = IMAGE_RE.match(image or "")
    return m.group("tag") if m else None


def config_from_deployment(deployment: dict) -> ServerConfig:
    """Build the ServerConfig from the `velero` Deployment (image tag + container args)."""
    pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    containers = pod_spec.get("containers", []) or []
    container = next((c for c in containers if c.get("name") == "velero"), None)
    if container is None:
        container = next((c for c in containers if image_tag(c.get("image", ""))), containers[0] if containers else {})
    cfg = ServerConfig()
    cfg.namespace = deployment["metadata"]["namespace"]
    cfg.image = container.get("image", cfg.image)
    cfg.version = image_tag(cfg.image) or cfg.version
    cfg.plugins = [c.get("image", "") for c in pod_spec.get("initContainers", []) or []]
    args = list(container.get("args", []) or [])
    cfg.args = args
    _apply_flags(cfg, args)
    return cfg


def _apply_flags(cfg: ServerConfig, args: list[str]) -> None:
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("--"):
            continue  # the `server` sub-command
        name, eq, value = arg[2:].partition("=")
        bool_flags = {"default-volumes-to-fs-backup", "default-snapshot-move-data", "restore-only",
                      "schedule-skip-immediately", "disable-informer-cache"}
        if not eq:
            if name in bool_flags:
                value = "true"
            elif i < len(args) and not args[i].startswith("--"):
                value = args[i]
                i += 1
        try:
            _set_flag(cfg, name, value)
        except ValueError:
            cfg.unknown_flags.append(arg)


def _set_flag(cfg: ServerConfig, name: str, value: str) -> None:
    if name == "features":
        cfg.features = [f.strip() for f in value.split(",") if f.strip()]
    elif name == "uploader-type":
        cfg.uploader_type = value
    elif name == "default-backup-ttl":
        cfg.default_backup_ttl = parse_duration(value)
    elif name == "default-backup-storage-location":
        cfg.default_backup_storage_location = value
    elif name == "backup-sync-period":
        d = parse_duration(value)
        cfg.backup_sync_period = d if d.total_seconds() > 0 else timedelta(minutes=1)
    elif name == "store-validation-frequency":
        cfg.store_validation_frequency = parse_duration(value)
    elif name == "garbage-collection-frequency":
        d = parse_duration(value)
        cfg.garbage_collection_frequency = d if d.total_seconds() > 0 else timedelta(hours=1)
    elif name == "default-volumes-to-fs-backup":
        cfg.default_volumes_to_fs_backup = _parse_bool(value)
    elif name == "default-snapshot-move-data":
        cfg.default_snapshot_move_data = _parse_bool(value)
    elif name in ("fs-backup-timeout", "restic-timeout"):
        cfg.fs_backup_timeout = parse_duration(value)
    elif name == "default-item-operation-timeout":
        cfg.default_item_operation_timeout = parse_duration(value)
    elif name == "resource-timeout":
        cfg.resource_timeout = parse_duration(value)
    elif name == "terminating-resource-timeout":
        cfg.terminating_resource_timeout = parse_duration(value)
    elif name == "restore-resource-priorities":
        cfg.restore_resource_priorities = value
    elif name == "default-volume-snapshot-locations":
        for pair in filter(None, value.split(",")):
            provider, _, loc = pair.partition(":")
            cfg.default_volume_snapshot_locations[provider] = loc
    elif name == "disable-controllers":
        cfg.disable_controllers = [c.strip() for c in value.split(",") if c.strip()]
    elif name == "restore-only":
        cfg.restore_only = _parse_bool(value)
    elif name == "schedule-skip-immediately":
        cfg.schedule_skip_immediately = _parse_bool(value)
    elif name == "concurrent-backups":
        cfg.concurrent_backups = max(1, int(value))
    else:
        # Flags with no effect in the emulator (log level, client qps, metrics address...).
        pass
