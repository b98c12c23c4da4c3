"""Reading a CephCluster's status the way Rook writes it (failure is Progressing + Error, health is separate)."""
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import status

OK = ["HEALTH_OK", "HEALTH_WARN"]


def cluster(phase=None, state=None, message=None, health=None, generation=1, observed=1, conditions=None, managed=None, details=None):
    obj = {"metadata": {"name": "rook-ceph", "namespace": "rook-ceph", "generation": generation, "managedFields": managed or []},
           "status": {}}
    st = obj["status"]
    if phase:
        st.update(phase=phase, state=state, message=message, conditions=conditions or [])
        if phase == "Ready":
            st["observedGeneration"] = observed
    if health:
        st["ceph"] = {"health": health, "details": details or {}, "capacity": {"bytesTotal": 300, "bytesUsed": 10, "bytesAvailable": 290}}
    return obj


def test_ready_needs_phase_generation_and_health():
    assert status.ready(cluster("Ready", "Created", "Cluster created successfully", "HEALTH_OK"), OK)
    assert status.ready(cluster("Ready", "Created", "x", "HEALTH_WARN"), OK)
    assert not status.ready(cluster("Ready", "Created", "x", "HEALTH_WARN"), ["HEALTH_OK"])
    assert not status.ready(cluster("Ready", "Created", "x", "HEALTH_ERR"), OK)
    assert not status.ready(cluster("Ready", "Created", "x"), OK)  # no status.ceph yet
    assert not status.ready(cluster("Ready", "Created", "x", "HEALTH_OK", generation=2, observed=1), OK)
    assert not status.ready(cluster("Progressing", "Creating", "Configuring Ceph Mons"), OK)


def test_failure_is_progressing_with_state_error_and_a_stale_ready_condition_does_not_hide_it():
    conditions = [{"type": "Ready", "status": "True", "reason": "ClusterCreated", "lastHeartbeatTime": "2026-01-01T00:00:00Z"},
                  {"type": "Progressing", "status": "False", "reason": "ClusterProgressing", "lastHeartbeatTime": "2026-01-01T00:05:00Z"}]
    obj = cluster("Progressing", "Error", "failed to create cluster: failed to start ceph monitors: failed to assign pods to mons: "
                  "failed to schedule mons", conditions=conditions)
    assert status.failed_since(obj).endswith("failed to schedule mons")
    assert not status.ready(obj, OK)


def test_an_error_older_than_our_write_is_not_the_answer_yet():
    conditions = [{"type": "Progressing", "status": "False", "lastHeartbeatTime": "2026-01-01T00:05:00Z"}]
    obj = cluster("Progressing", "Error", "old failure", conditions=conditions,
                  managed=[{"manager": "fleetdr", "operation": "Apply", "time": "2026-01-01T00:06:00Z"}])
    since = status.write_time(obj, "fleetdr")
    assert status.failed_since(obj, since) is None
    obj["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:07:00Z"
    assert status.failed_since(obj, since) == "old failure"


def test_summary_and_reasons_name_the_health_checks():
    obj = cluster("Ready", "Created", "Cluster created successfully", "HEALTH_ERR",
                  details={"OSD_DOWN": {"severity": "HEALTH_WARN", "message": "1 osds down"}})
    info = status.summary(obj)
    assert info["health"] == "HEALTH_ERR" and info["health_checks"] == {"OSD_DOWN": "1 osds down"}
    assert info["capacity"] == {"total_bytes": 300, "used_bytes": 10, "available_bytes": 290}
    assert status.not_ready_reason(obj, OK) == "Ceph health HEALTH_ERR (OSD_DOWN: 1 osds down)"
    assert "not reconciled" in status.not_ready_reason({"metadata": {}}, OK)


def test_deletion_blocked_message():
    obj = cluster("Deleting", "Deleting", "Deleting the CephCluster", conditions=[
        {"type": "Deleting", "status": "True"},
        {"type": "DeletionIsBlocked", "status": "True", "reason": "ObjectHasDependents",
         "message": 'CephCluster "rook-ceph/rook-ceph" will not be deleted until all dependents are removed: CephBlockPool: [replicapool]'}])
    assert status.summary(obj)["deletion_blocked"].endswith("CephBlockPool: [replicapool]")
