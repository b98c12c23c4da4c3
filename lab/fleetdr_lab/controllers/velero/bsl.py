"""BackupStorageLocation controller: default handling and validation.

Upstream source: Velero pkg/controller/backup_storage_location_controller.go.
"""
from __future__ import annotations

import json

from .server_config import parse_duration
from .backup_store import ObjectStoreError, run_blocking
from .server import GROUP, VeleroController, parse_time

PLURAL = "backupstoragelocations"


def validation_frequency(bsl: dict, config):
    """spec.validationFrequency (0 = no periodic validation) or --store-validation-frequency."""
    value = (bsl.get("spec") or {}).get("validationFrequency")
    if value is None:
        return config.store_validation_frequency
    try:
        return parse_duration(value)
    except ValueError:
        return config.store_validation_frequency


class BackupStorageLocationController(VeleroController):
    name = "backup-storage-location"
    watches = [(GROUP, PLURAL)]
    # Real: a 10s tick that validates what is due. 1s here keeps tests quick; "due" is unchanged.
    resync_seconds = 1.0

    def __init__(self, server):
        super().__init__(server)
        self._validated_spec: dict[str, str] = {}

    async def reconcile(self, key):
        bsl = self.get(PLURAL, key)
        if bsl is None:
            self._validated_spec.pop(key, None)
            return
        self._ensure_single_default(bsl)
        bsl = self.get(PLURAL, key)
        if bsl is None:
            return
        spec_key = json.dumps(bsl.get("spec") or {}, sort_keys=True)
        status = bsl.get("status") or {}
        if (self._validated_spec.get(key) == spec_key and status.get("phase")
                and not self._due(bsl)):
            return
        await self.validate(bsl, spec_key)

    def _due(self, bsl: dict) -> bool:
        freq = validation_frequency(bsl, self.config)
        last = parse_time((bsl.get("status") or {}).get("lastValidationTime"))
        if last is None:
            return True
        if freq.total_seconds() <= 0:
            return False
        return self.clock.now() >= last + freq

    def _ensure_single_default(self, bsl: dict):
        """At most one default: the most recently created keeps it."""
        if not (bsl.get("spec") or {}).get("default"):
            return
        defaults = [b for b in self.list(PLURAL) if (b.get("spec") or {}).get("default")]
        if len(defaults) < 2:
            return
        defaults.sort(key=lambda b: (b["metadata"].get("creationTimestamp", ""),
                                     int(b["metadata"].get("resourceVersion", "0"))))
        for b in defaults[:-1]:
            self.patch(PLURAL, b["metadata"]["name"], {"spec": {"default": False}})

    async def validate(self, bsl: dict, spec_key: str | None = None) -> str:
        name = bsl["metadata"]["name"]
        error = None
        try:
            backup_store = self.server.backup_store(bsl)
            await run_blocking(backup_store.is_valid)
        except ObjectStoreError as exc:
            error = str(exc)
        except Exception as exc:  # anything else still makes the BSL unavailable
            error = str(exc)
        current = self.get(PLURAL, name)
        if current is None:
            return "Unavailable"
        self._validated_spec[name] = spec_key or json.dumps(current.get("spec") or {}, sort_keys=True)
        if error is None:
            patch = {"phase": "Available", "lastValidationTime": self.now(), "message": None}
        else:
            patch = {"phase": "Unavailable", "lastValidationTime": self.now(),
                     "message": f'BackupStorageLocation "{name}" is unavailable: {error}'}
            self.log.info("BSL %s unavailable: %s", name, error)
        self.patch(PLURAL, name, {"status": patch})
        return patch["phase"]

    async def resync(self):
        for bsl in self.list(PLURAL, shared=True):
            if self._due(bsl):
                self.enqueue(bsl["metadata"]["name"])
