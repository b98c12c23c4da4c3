# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Reading and writing Rook objects on one cluster: through the apply engine, waited for by watch.

Every write goes through module_utils/apply.py (server-side apply as field manager fleetdr, no
write when the live object already holds the request, Secret-masked diffs). Waits follow the
object by watch and stop early on a failure Rook has written into the status, so a known failure
is reported with Rook's message instead of waiting out the timeout.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.fleetdr.kube.plugins.module_utils import apply
from ansible_collections.fleetdr.kube.plugins.module_utils.errors import FleetdrError, ValidationError, WaitTimeout
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import cluster as clusters, status as statuses
from ansible_collections.fleetdr.kube.plugins.module_utils.waiter import wait_for

GROUP_PATH = "/apis/ceph.rook.io/v1"
# What blocks a CephCluster's deletion (Rook pkg/operator/ceph/cluster/dependents.go), by kind.
DEPENDENT_PLURALS = (
    ("CephBlockPool", "cephblockpools"), ("CephBlockPoolRadosNamespace", "cephblockpoolradosnamespaces"),
    ("CephBucketNotification", "cephbucketnotifications"), ("CephBucketTopic", "cephbuckettopics"),
    ("CephClient", "cephclients"), ("CephFilesystem", "cephfilesystems"), ("CephFilesystemMirror", "cephfilesystemmirrors"),
    ("CephFilesystemSubVolumeGroup", "cephfilesystemsubvolumegroups"), ("CephNFS", "cephnfses"),
    ("CephObjectRealm", "cephobjectrealms"), ("CephObjectStore", "cephobjectstores"),
    ("CephObjectStoreUser", "cephobjectstoreusers"), ("CephObjectZone", "cephobjectzones"),
    ("CephObjectZoneGroup", "cephobjectzonegroups"), ("CephRBDMirror", "cephrbdmirrors"),
)


def collection(namespace, plural):
    return "{0}/namespaces/{1}/{2}".format(GROUP_PATH, namespace, plural)


def read(client, namespace, plural, name):
    return client.request("Reading {0} {1}/{2}".format(plural, namespace, name), "GET",
                          "{0}/{1}".format(collection(namespace, plural), name), missing_ok=True)


def nodes(client):
    return (client.request("Listing Nodes", "GET", "/api/v1/nodes") or {}).get("items") or []


def dependents(client, namespace):
    """{kind: [names]} of the Rook objects in ``namespace`` that keep a CephCluster from being deleted."""
    found = {}
    for kind, plural in DEPENDENT_PLURALS:
        listing = client.request("Listing {0}".format(plural), "GET", collection(namespace, plural), missing_ok=True) or {}
        names = sorted(item["metadata"]["name"] for item in listing.get("items") or [])
        if names:
            found[kind] = names
    return found


def rook_volumes(client, namespace, operator_namespace):
    """PersistentVolumes Rook's CSI drivers provisioned from this cluster (they block its deletion:
    Rook pkg/operator/ceph/cluster/controller.go checks PVs, not PVCs)."""
    drivers = ("{0}.rbd.csi.ceph.com".format(operator_namespace), "{0}.cephfs.csi.ceph.com".format(operator_namespace))
    out = []
    for pv in (client.request("Listing PersistentVolumes", "GET", "/api/v1/persistentvolumes") or {}).get("items") or []:
        csi = (pv.get("spec") or {}).get("csi") or {}
        if csi.get("driver") in drivers and (csi.get("volumeAttributes") or {}).get("clusterID") == namespace:
            claim = (pv.get("spec") or {}).get("claimRef") or {}
            out.append({"name": pv["metadata"]["name"],
                        "claim": "{0}/{1}".format(claim.get("namespace"), claim.get("name")) if claim else None})
    return sorted(out, key=lambda volume: volume["name"])


def _describe_dependents(found):
    return ", ".join("{0}: [{1}]".format(kind, ", ".join(names)) for kind, names in sorted(found.items()))


def wait_cluster(client, obj, health_ok, timeout):
    """Wait by watch until the CephCluster is usable; fail at once with Rook's message when its
    reconcile (after our last write) failed."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]

    def settled(live):
        return live is not None and (statuses.ready(live, health_ok)
                                     or statuses.failed_since(live, statuses.write_time(live, apply.FIELD_MANAGER)) is not None)

    try:
        live = wait_for(client.watch_path(collection(namespace, clusters.PLURAL), name), settled, timeout,
                        "CephCluster {0}/{1} to be Ready with health {2}".format(namespace, name, " or ".join(health_ok)))
    except WaitTimeout as exc:
        raise WaitTimeout("CephCluster {0}/{1} not usable after {2}s: {3}".format(
            namespace, name, timeout, statuses.not_ready_reason(exc.last, health_ok)), last=exc.last, status=statuses.summary(exc.last))
    message = statuses.failed_since(live, statuses.write_time(live, apply.FIELD_MANAGER))
    if message and not statuses.ready(live, health_ok):
        raise FleetdrError("CephCluster {0}/{1}: Rook reports: {2}".format(namespace, name, message), status=statuses.summary(live))
    return live


def ensure_cluster(client, params, check_mode=False):
    """(change, live object or None) for state=present; every check runs before the first write."""
    obj = clusters.build(params)
    namespace, name = params["namespace"], params["name"]
    existing = read(client, namespace, clusters.PLURAL, name)
    clusters.check_against_cluster(obj, nodes(client), existing)
    mapper = apply.ResourceMapper()
    change = apply.apply_object(client, mapper, obj, check_mode=check_mode, live=existing)
    if check_mode:
        return change, existing
    live = read(client, namespace, clusters.PLURAL, name)
    if params.get("wait"):
        live = wait_cluster(client, obj, params["health_ok"], params["wait_timeout"])
    return change, live


def remove_cluster(client, params, operator_namespace, destroy_data=False, check_mode=False):
    """Delete the CephCluster the way Rook lets it go: refused (nothing written) while dependents or
    Rook-provisioned volumes exist; with ``destroy_data`` the cleanup policy is confirmed first."""
    namespace, name = params["namespace"], params["name"]
    existing = read(client, namespace, clusters.PLURAL, name)
    if existing is None:
        return apply.Change(object="CephCluster {0}/{1}".format(namespace, name), action="absent"), None
    found = dependents(client, namespace)
    if found:
        raise ValidationError("state", "CephCluster {0}/{1} still has dependents, which Rook would wait for forever: {2}; "
                              "delete them first".format(namespace, name, _describe_dependents(found)))
    volumes = rook_volumes(client, namespace, operator_namespace)
    allow = ((existing.get("spec") or {}).get("cleanupPolicy") or {}).get("allowUninstallWithVolumes")
    if volumes and not allow:
        raise ValidationError("state", "CephCluster {0}/{1} still backs {2} PersistentVolume(s) ({3}); Rook blocks the deletion "
                              "until they are gone".format(namespace, name, len(volumes), ", ".join(
                                  v["name"] + (" for " + v["claim"] if v["claim"] else "") for v in volumes)))
    change = apply.Change(object="CephCluster {0}/{1}".format(namespace, name), action="delete",
                          diff={"before": {"spec": existing.get("spec")}, "after": {}})
    if check_mode:
        return change, existing
    path = "{0}/{1}".format(collection(namespace, clusters.PLURAL), name)
    if destroy_data:
        client.request("Confirming the cleanup policy of CephCluster {0}/{1}".format(namespace, name), "PATCH", path,
                       body={"spec": {"cleanupPolicy": {"confirmation": clusters.DESTROY_DATA}}},
                       content_type="application/merge-patch+json")
    client.request("Deleting CephCluster {0}/{1}".format(namespace, name), "DELETE", path, missing_ok=True)
    if params.get("wait"):
        def gone_or_blocked(live):
            return live is None or statuses.summary(live)["deletion_blocked"] is not None

        try:
            live = wait_for(client.watch_path(collection(namespace, clusters.PLURAL), name), gone_or_blocked, params["wait_timeout"],
                            "CephCluster {0}/{1} to be deleted".format(namespace, name))
        except WaitTimeout as exc:
            raise WaitTimeout("CephCluster {0}/{1} still there after {2}s: {3}".format(
                namespace, name, params["wait_timeout"], statuses.summary(exc.last)["message"] or "no status"), last=exc.last)
        if live is not None:
            raise FleetdrError("Rook blocks the deletion of CephCluster {0}/{1}: {2}".format(
                namespace, name, statuses.summary(live)["deletion_blocked"]))
    return change, None
