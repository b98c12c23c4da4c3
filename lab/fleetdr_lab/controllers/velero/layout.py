"""Object-store layout of a BackupStorageLocation.

Upstream source: Velero pkg/persistence/object_store_layout.go, object_store.go.
"""
from __future__ import annotations

VALID_TOP_LEVEL_DIRS = ("backups", "restores", "restic", "metadata", "plugins", "kopia")


def normalize_bucket_prefix(bucket: str, prefix: str | None) -> tuple[str, str]:
    """Trim `/` from both ends; the root is `<bucket>/<prefix>/` (or the bucket root)."""
    return (bucket or "").strip("/"), (prefix or "").strip("/")


class ObjectStoreLayout:
    """Key names relative to the bucket, for one BSL root (bucket + prefix)."""

    def __init__(self, prefix: str | None = ""):
        p = (prefix or "").strip("/")
        self.root = f"{p}/" if p else ""

    def subdir(self, name: str) -> str:
        return f"{self.root}{name}/"

    # ---- backups/<b>/...
    def backups_dir(self) -> str:
        return self.subdir("backups")

    def backup_dir(self, backup: str) -> str:
        return f"{self.root}backups/{backup}/"

    def backup_metadata_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}velero-backup.json"

    def backup_contents_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}.tar.gz"

    def backup_log_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-logs.gz"

    def backup_results_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-results.gz"

    def backup_resource_list_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-resource-list.json.gz"

    def backup_volume_snapshots_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-volumesnapshots.json.gz"

    def backup_item_operations_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-itemoperations.json.gz"

    def backup_pod_volume_backups_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-podvolumebackups.json.gz"

    def backup_volume_info_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-volumeinfo.json.gz"

    def csi_volume_snapshots_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-csi-volumesnapshots.json.gz"

    def csi_volume_snapshot_contents_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-csi-volumesnapshotcontents.json.gz"

    def csi_volume_snapshot_classes_key(self, backup: str) -> str:
        return f"{self.backup_dir(backup)}{backup}-csi-volumesnapshotclasses.json.gz"

    # ---- restores/<r>/...
    def restore_dir(self, restore: str) -> str:
        return f"{self.root}restores/{restore}/"

    def restore_log_key(self, restore: str) -> str:
        return f"{self.restore_dir(restore)}restore-{restore}-logs.gz"

    def restore_results_key(self, restore: str) -> str:
        return f"{self.restore_dir(restore)}restore-{restore}-results.gz"

    def restore_resource_list_key(self, restore: str) -> str:
        return f"{self.restore_dir(restore)}restore-{restore}-resource-list.json.gz"

    def restore_item_operations_key(self, restore: str) -> str:
        return f"{self.restore_dir(restore)}restore-{restore}-itemoperations.json.gz"

    def restore_volume_info_key(self, restore: str) -> str:
        return f"{self.restore_dir(restore)}{restore}-volumeinfo.json.gz"

    # ---- repositories
    def kopia_repo_dir(self, volume_namespace: str) -> str:
        return f"{self.root}kopia/{volume_namespace}/"


def versions_to_write(version: str) -> dict[str, bool]:
    """Which optional per-backup files a server version writes (Velero
    pkg/persistence/object_store.go and pkg/controller/backup_controller.go at each tag)."""
    parts = version.lstrip("v").split(".")
    try:
        minor = int(parts[1])
    except (IndexError, ValueError):
        minor = 18
    return {
        "csi_all": minor <= 16,               # -csi-volumesnapshots/-contents/-classes
        "csi_classes_only": minor == 17,
    }
