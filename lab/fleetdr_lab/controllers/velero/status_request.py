"""ServerStatusRequest controller.

Upstream source: Velero pkg/controller/server_status_request_controller.go.
"""
from __future__ import annotations

from datetime import timedelta

from .server import VeleroController, parse_time

# Built-in plugins registered by the server binary (pkg/cmd/server/plugin/plugin.go).
BUILTIN_PLUGINS = [
    ("velero.io/pv", "BackupItemAction"),
    ("velero.io/pod", "BackupItemAction"),
    ("velero.io/service-account", "BackupItemAction"),
    ("velero.io/crd-remap-version", "BackupItemAction"),
    ("velero.io/csi-pvc-backupper", "BackupItemActionV2"),
    ("velero.io/csi-volumesnapshot-backupper", "BackupItemActionV2"),
    ("velero.io/csi-volumesnapshotcontent-backupper", "BackupItemActionV2"),
    ("velero.io/csi-volumesnapshotclass-backupper", "BackupItemActionV2"),
    ("velero.io/job", "RestoreItemAction"),
    ("velero.io/pod", "RestoreItemAction"),
    ("velero.io/pod-volume-restore", "RestoreItemAction"),
    ("velero.io/init-restore-hook", "RestoreItemAction"),
    ("velero.io/service", "RestoreItemAction"),
    ("velero.io/service-account", "RestoreItemAction"),
    ("velero.io/add-pvc-from-pod", "RestoreItemAction"),
    ("velero.io/change-storage-class", "RestoreItemAction"),
    ("velero.io/role-bindings", "RestoreItemAction"),
    ("velero.io/cluster-role-bindings", "RestoreItemAction"),
    ("velero.io/crd-preserve-fields", "RestoreItemAction"),
    ("velero.io/change-pvc-node-selector", "RestoreItemAction"),
    ("velero.io/apiservice", "RestoreItemAction"),
    ("velero.io/admission-webhook-configuration", "RestoreItemAction"),
    ("velero.io/secret", "RestoreItemAction"),
    ("velero.io/dataupload", "RestoreItemAction"),
    ("velero.io/change-image-name", "RestoreItemAction"),
    ("velero.io/pvc", "RestoreItemAction"),
    ("velero.io/csi-pvc-restorer", "RestoreItemActionV2"),
    ("velero.io/csi-volumesnapshot-restorer", "RestoreItemActionV2"),
    ("velero.io/csi-volumesnapshotcontent-restorer", "RestoreItemActionV2"),
    ("velero.io/csi-volumesnapshotclass-restorer", "RestoreItemActionV2"),
    ("velero.io/dataupload-delete", "DeleteItemAction"),
    ("velero.io/csi-volumesnapshotcontent-delete", "DeleteItemAction"),
    ("velero.io/pvc", "ItemBlockAction"),
    ("velero.io/pod", "ItemBlockAction"),
    ("velero.io/service-account", "ItemBlockAction"),
]


def server_plugins(config) -> list[dict]:
    out = []
    for name, kind in BUILTIN_PLUGINS:
        if name == "velero.io/crd-remap-version" and config.feature_enabled("EnableAPIGroupVersions"):
            continue
        out.append({"name": name, "kind": kind})
    for image in config.plugins:
        repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
        if repo == "velero-plugin-for-aws":
            out.append({"name": "velero.io/aws", "kind": "ObjectStore"})
            out.append({"name": "velero.io/aws", "kind": "VolumeSnapshotter"})
    return out


class ServerStatusRequestController(VeleroController):
    name = "server-status-request"
    watches = [("velero.io", "serverstatusrequests")]
    resync_seconds = 5.0    # expiry check (real: every 5m; cheap enough to run more often)

    def reconcile(self, key):
        ssr = self.get("serverstatusrequests", key)
        if ssr is None:
            return
        phase = (ssr.get("status") or {}).get("phase", "")
        if phase in ("", "New"):
            self.patch("serverstatusrequests", key, {"status": {
                "phase": "Processed",
                "serverVersion": self.config.version,
                "processedTimestamp": self.now(),
                "plugins": server_plugins(self.config)}})

    async def resync(self):
        now = self.clock.now()
        for ssr in self.list("serverstatusrequests", shared=True):
            st = ssr.get("status") or {}
            t = parse_time(st.get("processedTimestamp"))
            if st.get("phase") == "Processed" and t and now - t > timedelta(minutes=1):
                try:
                    self.store.delete("velero.io", "serverstatusrequests", self.namespace,
                                      ssr["metadata"]["name"])
                except Exception:
                    pass
