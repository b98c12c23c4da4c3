"""`fleetdr-lab status` shows each cluster's Rook state: operator version, every CephCluster's phase,
health, mon/mgr/osd daemons, and how many pools, filesystems and object stores are Ready."""
from __future__ import annotations

import json

from helpers import wait_for

GROUP, VERSION, NS = "ceph.rook.io", "v1", "rook-ceph"


def test_status_has_rook_columns(ceph_lab, ceph_apis):
    custom, _core, _storage = ceph_apis
    wait_for(lambda: ((custom.get_namespaced_custom_object(GROUP, VERSION, NS, "cephclusters", "rook-ceph").get("status") or {})
                      .get("ceph") or {}).get("health"), "health of rook-ceph")
    rook = json.loads(ceph_lab.cli("status", "--json").stdout)["clusters"][0]["rook"]
    assert rook["version"] == "v1.20.6" and rook["namespace"] == NS
    entry = next(c for c in rook["clusters"] if c["namespace"] == NS)
    assert entry["phase"] == "Ready" and entry["health"].startswith("HEALTH_") and entry["mon"] == 1 and entry["mgr"] == 1
    assert entry["osd"] == 3  # one per node's raw device (useAllNodes, useAllDevices)
    text = ceph_lab.cli("status").stdout
    assert "ROOK" in text and "rook-ceph/rook-ceph Ready HEALTH_" in text and " 1/1/3 " in text
