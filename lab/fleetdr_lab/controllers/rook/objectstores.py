"""CephObjectStore, CephObjectStoreUser and ObjectBucketClaim/ObjectBucket.

Rook pkg/operator/ceph/object/{controller,objectstore,rgw,status}.go, object/user/controller.go,
object/bucket/provisioner.go and lib-bucket-provisioner pkg/provisioner/controller.go. Each Ready
CephObjectStore is a RADOS gateway of its own: an S3 endpoint of the lab's S3 child process with its
own users and its own bucket namespace (s3_rgw.py), so two stores (of one cluster or of two) each
have their own bucket `velero`. A CephObjectStoreUser is an RGW user of its store (user ID = the
CR's name) with one key; a bucket claim gets its own user (`obc-<ns>-<name>-<claim uid>`) and the
bucket, owned by that user. Only a bucket's owner can use it (AccessDenied for every other user of
the store) unless the bucket's policy grants more, a name another user of the store owns is
409 BucketAlreadyExists (the claim stays Pending and retries), and a key of one store is unknown to
every other (InvalidAccessKeyId). Objects are real S3 objects boto3 can read.
In-cluster clients reach a store at `http://rook-ceph-rgw-<store>.<ns>.svc:<port>`: a Ready store
registers its RGW Service in the cluster's DNS (`Cluster.service_addresses`, the store's own port on
the lab host), so the emulated Velero of that cluster, or of any cluster through a LoadBalancer
Service in front of it, can keep its backups there. `fleetdr-lab rook endpoint CLUSTER STORE` prints
that address for clients on the lab host.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import uuid

from ..base import is_deleting, owner_reference
from .cluster import usable
from .operator import GROUP, RookController

STORE_FINALIZER = "cephobjectstore.ceph.rook.io"
USER_FINALIZER = "cephobjectstoreuser.ceph.rook.io"
OBC_FINALIZER = "objectbucket.io/finalizer"
OBC_GROUP = "objectbucket.io"


def rgw_host(store: str, namespace: str) -> str:
    return f"rook-ceph-rgw-{store}.{namespace}.svc"


def store_id(cluster, namespace: str, store: str) -> str:
    """The object store's name in the S3 child: one RGW per CephObjectStore of each cluster."""
    return f"{cluster.name}/{namespace}/{store}"


async def _blocking(fn, *args, **kwargs):
    """A blocking call of the lab's object-store control (s3_service.ObjectStore.rgw*) in an executor."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


class CephObjectStoreController(RookController):
    plural = "cephobjectstores"
    watches = [(GROUP, "cephobjectstores"), (GROUP, "cephclusters"), (GROUP, "cephobjectstoreusers"), (OBC_GROUP, "objectbucketclaims")]

    async def reconcile(self, key):
        ns, name = key
        obj = self.store.get_or_none(GROUP, "cephobjectstores", ns, name)
        if obj is None:
            return
        if is_deleting(obj):
            return await self._delete(obj)
        obj = self.with_finalizer(obj, STORE_FINALIZER)
        if not obj.get("status"):
            obj = self.put_status(obj, {"phase": "Progressing"})
        if not usable(self.store, ns):
            self.enqueue_after(1.0, key)
            return
        gateway = (obj.get("spec") or {}).get("gateway") or {}
        port, secure = gateway.get("port") or 0, gateway.get("securePort") or 0
        if len(name) > 38 or (port <= 0 and secure <= 0):
            why = "object store name must be <= 38 characters" if len(name) > 38 else \
                "invalid create: either of port or securePort fields should be not be zero"
            self.event(obj, "Warning", "ReconcileFailed", why)
            self.put_status(obj, dict(obj.get("status") or {}, phase="Failure"))
            return
        instances = max(gateway.get("instances") or 1, 1)
        labels = {"app": "rook-ceph-rgw", "rook_cluster": ns, "rook_object_store": name, "rgw": name, "ceph_daemon_id": name}
        deployment = f"rook-ceph-rgw-{name}-a"
        image = ((self._cluster(ns) or {}).get("spec") or {}).get("cephVersion", {}).get("image")
        if self.store.get_or_none("apps", "deployments", ns, deployment) is None:
            self.store.create("apps", "deployments", ns, {
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": deployment, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(obj)]},
                "spec": {"replicas": instances, "selector": {"matchLabels": {"app": "rook-ceph-rgw", "rook_object_store": name}},
                         "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "rgw", "image": image}]}}}})
            self.store.create("", "services", ns, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"rook-ceph-rgw-{name}", "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(obj)]},
                "spec": {"selector": {"app": "rook-ceph-rgw", "rook_object_store": name},
                         "ports": [{"name": "http", "port": port or 80, "targetPort": 8080, "protocol": "TCP"}]}})
        endpoint = f"http://{rgw_host(name, ns)}:{port or 80}"
        service = (ns, f"rook-ceph-rgw-{name}")
        if service not in self.cluster.service_addresses:
            address = await _blocking(self.cluster.lab.objectstore.rgw_store, store_id(self.cluster, ns, name))
            obj = self.store.get_or_none(GROUP, "cephobjectstores", ns, name)
            if obj is None or is_deleting(obj):
                return self.enqueue(key)
            self.cluster.service_addresses[service] = address
        want = dict(obj.get("status") or {}, phase="Ready", info={"endpoint": endpoint}, replicas=instances,
                    endpoints={"insecure": [endpoint], "secure": []}, observedGeneration=obj["metadata"].get("generation", 1))
        if want != obj.get("status"):
            self.put_status(obj, want)

    def _cluster(self, ns):
        items = self.store.list(GROUP, "cephclusters", ns)["items"]
        return items[0] if items else None

    async def _delete(self, obj):
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        sid = store_id(self.cluster, ns, name)
        objectstore = self.cluster.lab.objectstore
        users = sorted(u["metadata"]["name"] for u in self.store.list(GROUP, "cephobjectstoreusers", ns)["items"]
                       if (u.get("spec") or {}).get("store") == name)
        buckets = []
        if usable(self.store, ns):
            # any bucket in the gateway blocks the deletion (Rook object/dependents.go), a claim's or a user's
            status, answer = await _blocking(objectstore.rgw, "GET", "stores", sid, "buckets")
            buckets = sorted(b["name"] for b in answer) if status == 200 else []
            obj = self.store.get_or_none(GROUP, "cephobjectstores", ns, name)
            if obj is None:
                return
        if (users or buckets) and usable(self.store, ns):
            # Rook pkg/util/dependents StringWithHeader: "<plural kind>: %v" of each kind, sorted
            parts = sorted((["CephObjectStoreUsers: [%s]" % " ".join(users)] if users else []) + (
                ["buckets in the object store (could be from ObjectBucketClaims or COSI Buckets): [%s]" % " ".join(buckets)]
                if buckets else []))
            message = 'CephObjectStore "%s/%s" will not be deleted until all dependents are removed: %s' % (ns, name, ", ".join(parts))
            st = dict(obj.get("status") or {}, phase="Deleting")
            st["conditions"] = [{"type": "DeletionIsBlocked", "status": "True", "reason": "ObjectHasDependents", "message": message,
                                 "lastTransitionTime": self.now()}]
            if st != obj.get("status"):
                self.put_status(obj, st)
            # a bucket removed through S3 makes no event here: look again (Rook's WaitForRequeueIfFinalizerBlocked, 10 s)
            self.enqueue_after(10.0, (ns, name))
            return
        await _blocking(objectstore.rgw, "DELETE", "stores", sid)
        self.cluster.service_addresses.pop((ns, f"rook-ceph-rgw-{name}"), None)
        self.without_finalizer(obj, STORE_FINALIZER)


class CephObjectStoreUserController(RookController):
    plural = "cephobjectstoreusers"
    watches = [(GROUP, "cephobjectstoreusers"), (GROUP, "cephobjectstores")]

    async def reconcile(self, key):
        ns, name = key
        user = self.store.get_or_none(GROUP, "cephobjectstoreusers", ns, name)
        if user is None:
            return
        objectstore = self.cluster.lab.objectstore
        store_name = (user.get("spec") or {}).get("store")
        if is_deleting(user):
            if store_name:   # the RGW user and its key go; buckets it owned stay in the store
                await _blocking(objectstore.rgw, "DELETE", "stores", store_id(self.cluster, ns, store_name), "users", name)
            user = self.store.get(GROUP, "cephobjectstoreusers", ns, name)
            user["metadata"]["finalizers"] = [f for f in user["metadata"].get("finalizers") or [] if f != USER_FINALIZER]
            self.store.update(GROUP, "cephobjectstoreusers", ns, name, user)
            return
        if USER_FINALIZER not in (user["metadata"].get("finalizers") or []):
            user["metadata"].setdefault("finalizers", []).append(USER_FINALIZER)
            user = self.store.update(GROUP, "cephobjectstoreusers", ns, name, user)
        store = self.store.get_or_none(GROUP, "cephobjectstores", ns, store_name) if store_name else None
        if not store_name or store is None or (store.get("status") or {}).get("phase") != "Ready":
            if not store_name:
                self._phase(user, "ReconcileFailed")
            self.enqueue_after(1.0, key)
            return
        secret_name = f"rook-ceph-object-user-{store_name}-{name}"
        # Rook object/user/controller.go: the RGW user is made if the gateway lacks it (its existing key otherwise),
        # then the Secret is created or brought to that key (e.g. a Secret restored from another cluster's backup)
        display = (user.get("spec") or {}).get("displayName") or name
        key_id, secret = await _blocking(objectstore.rgw_user, store_id(self.cluster, ns, store_name), name, display)
        data = {"AccessKey": key_id, "SecretKey": secret, "Endpoint": store["status"]["info"]["endpoint"]}
        current = self.store.get_or_none("", "secrets", ns, secret_name)
        if current is None:
            self.store.create("", "secrets", ns, {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/rook",
                "metadata": {"name": secret_name, "namespace": ns, "ownerReferences": [owner_reference(user)],
                             "labels": {"app": "rook-ceph-rgw", "user": name, "rook_cluster": ns, "rook_object_store": store_name}},
                "stringData": data})
        elif dict((k, base64.b64decode(v).decode()) for k, v in (current.get("data") or {}).items() if k in data) != data:
            current["data"] = dict(current.get("data") or {}, **dict((k, base64.b64encode(v.encode()).decode()) for k, v in data.items()))
            self.store.update("", "secrets", ns, secret_name, current)
        user = self.store.get(GROUP, "cephobjectstoreusers", ns, name)
        want = {"phase": "Ready", "info": {"secretName": secret_name}, "observedGeneration": user["metadata"].get("generation", 1)}
        if user.get("status") != want:
            user["status"] = want
            self.store.update(GROUP, "cephobjectstoreusers", ns, name, user, subresource="status")

    def _phase(self, user, phase):
        user = self.store.get(GROUP, "cephobjectstoreusers", user["metadata"]["namespace"], user["metadata"]["name"])
        if (user.get("status") or {}).get("phase") != phase:
            user["status"] = {"phase": phase}
            self.store.update(GROUP, "cephobjectstoreusers", user["metadata"]["namespace"], user["metadata"]["name"], user,
                              subresource="status")


def bucket_provisioner(settings: dict, namespace: str) -> str:
    prefix = settings.get("ROOK_OBC_PROVISIONER_NAME_PREFIX")
    if prefix:
        return f"{prefix}.ceph.rook.io/bucket"
    if str(settings.get("ROOK_OBC_WATCH_OPERATOR_NAMESPACE", "false")).lower() == "true":
        return f"{namespace}.ceph.rook.io/bucket"
    return "ceph.rook.io/bucket"


class BucketClaimController(RookController):
    """lib-bucket-provisioner's controller with Rook's provisioner, for claims of Rook's bucket classes."""

    plural = "objectbucketclaims"
    watches = [(OBC_GROUP, "objectbucketclaims"), (GROUP, "cephobjectstores")]

    def keys_for(self, etype, obj):
        if obj.get("kind") == "ObjectBucketClaim":
            m = obj["metadata"]
            return ((m["namespace"], m["name"]),)
        return [(c["metadata"]["namespace"], c["metadata"]["name"]) for c in self.store.list(OBC_GROUP, "objectbucketclaims")["items"]]

    async def reconcile(self, key):
        ns, name = key
        claim = self.store.get_or_none(OBC_GROUP, "objectbucketclaims", ns, name)
        if claim is None:
            return
        sc = self.store.get_or_none("storage.k8s.io", "storageclasses", None, (claim.get("spec") or {}).get("storageClassName") or "")
        if sc is None:
            return
        params = sc.get("parameters") or {}
        store_ns = params.get("objectStoreNamespace") or ""
        if sc.get("provisioner") != bucket_provisioner(self.operator.settings, store_ns):
            return  # not ours: the claim is ignored silently (phase stays empty)
        ob_name = f"obc-{ns}-{name}"
        if is_deleting(claim):
            return await self._delete(claim, ob_name)
        if not (claim.get("status") or {}).get("phase"):
            claim = self._claim_status(claim, "Pending")
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        if OBC_FINALIZER not in (claim["metadata"].get("finalizers") or []):
            claim["metadata"].setdefault("finalizers", []).append(OBC_FINALIZER)
            claim["metadata"].setdefault("labels", {})["bucket-provisioner"] = sc["provisioner"].replace("/", "-")
            claim = self.store.update(OBC_GROUP, "objectbucketclaims", ns, name, claim)
        store = self.store.get_or_none(GROUP, "cephobjectstores", store_ns, params.get("objectStoreName") or "")
        if store is None or (store.get("status") or {}).get("phase") != "Ready":
            self.enqueue_after(1.0, key)  # any error leaves the claim Pending and retries
            return
        spec = claim.get("spec") or {}
        extra = spec.get("additionalConfig") or {}
        allowed = [k.strip() for k in str(self.operator.settings.get("ROOK_OBC_ALLOW_ADDITIONAL_CONFIG_FIELDS", "maxObjects,maxSize")).split(",")]
        refused = [k for k in extra if k not in allowed]
        if refused:
            self.event(claim, "Warning", "ProvisioningFailed", 'OBC config "%s" is not allowed' % refused[0])
            return
        bucket = spec.get("bucketName") or "%s-%s" % ((spec.get("generateBucketName") or name)[:26], uuid.uuid4())
        if spec.get("bucketName") != bucket:
            claim["spec"]["bucketName"] = bucket
            claim = self.store.update(OBC_GROUP, "objectbucketclaims", ns, name, claim)
        # Rook object/bucket/provisioner.go: the claim's own user, then the bucket created as that user
        objectstore = self.cluster.lab.objectstore
        sid = store_id(self.cluster, store_ns, store["metadata"]["name"])
        ceph_user = f"obc-{ns}-{name}-{claim['metadata']['uid']}"
        key_id, secret = await _blocking(objectstore.rgw_user, sid, ceph_user, ceph_user)
        status, answer = await _blocking(objectstore.rgw, "PUT", "stores", sid, "buckets", bucket, owner=ceph_user)
        if status != 200:
            # e.g. 409 BucketAlreadyExists: another user of the store owns the name. The provisioner removes the
            # user it made; the claim stays Pending and is retried with backoff (lib-bucket-provisioner).
            await _blocking(objectstore.rgw, "DELETE", "stores", sid, "users", ceph_user)
            self.enqueue_after(5.0, key)
            return
        port = str(((store.get("spec") or {}).get("gateway") or {}).get("port") or 80)
        owner = [owner_reference(claim)]
        labels = {"bucket-provisioner": sc["provisioner"].replace("/", "-")}
        self.store.create("", "secrets", ns, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {
            "name": name, "namespace": ns, "finalizers": [OBC_FINALIZER], "labels": labels, "ownerReferences": owner},
            "stringData": {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}})
        self.store.create("", "configmaps", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": name, "namespace": ns, "finalizers": [OBC_FINALIZER], "labels": labels, "ownerReferences": owner},
            "data": {"BUCKET_HOST": rgw_host(store["metadata"]["name"], store_ns), "BUCKET_NAME": bucket, "BUCKET_PORT": port,
                     "BUCKET_REGION": "", "BUCKET_SUBREGION": ""}})
        ob = self.store.create(OBC_GROUP, "objectbuckets", None, {
            "apiVersion": f"{OBC_GROUP}/v1alpha1", "kind": "ObjectBucket",
            "metadata": {"name": ob_name, "finalizers": [OBC_FINALIZER], "labels": labels},
            "spec": {"storageClassName": sc["metadata"]["name"], "reclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                     "claimRef": {"apiVersion": f"{OBC_GROUP}/v1alpha1", "kind": "ObjectBucketClaim", "namespace": ns, "name": name,
                                  "uid": claim["metadata"]["uid"]},
                     "endpoint": {"bucketHost": rgw_host(store["metadata"]["name"], store_ns), "bucketPort": int(port),
                                  "bucketName": bucket, "region": "", "subRegion": "", "additionalConfig": extra},
                     "additionalState": {"cephUser": ceph_user, "objectStoreName": store["metadata"]["name"],
                                         "objectStoreNamespace": store_ns}}})
        ob["status"] = {"phase": "Bound"}
        self.store.update(OBC_GROUP, "objectbuckets", None, ob_name, ob, subresource="status")
        claim = self.store.get(OBC_GROUP, "objectbucketclaims", ns, name)
        claim["spec"]["objectBucketName"] = ob_name
        claim = self.store.update(OBC_GROUP, "objectbucketclaims", ns, name, claim)
        self._claim_status(claim, "Bound")

    def _claim_status(self, claim, phase):
        claim = self.store.get(OBC_GROUP, "objectbucketclaims", claim["metadata"]["namespace"], claim["metadata"]["name"])
        claim["status"] = {"phase": phase}
        return self.store.update(OBC_GROUP, "objectbucketclaims", claim["metadata"]["namespace"], claim["metadata"]["name"], claim,
                                 subresource="status")

    async def _delete(self, claim, ob_name):
        ns, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
        ob = self.store.get_or_none(OBC_GROUP, "objectbuckets", None, ob_name)
        if ob is not None:
            objectstore = self.cluster.lab.objectstore
            state = ob["spec"].get("additionalState") or {}
            sid = store_id(self.cluster, state.get("objectStoreNamespace") or "", state.get("objectStoreName") or "")
            if ob["spec"].get("reclaimPolicy") == "Delete":   # the bucket and its objects (admin ops purge-objects)
                await _blocking(objectstore.rgw, "DELETE", "stores", sid, "buckets", ob["spec"]["endpoint"]["bucketName"],
                                **{"purge-objects": "true"})
            if state.get("cephUser"):   # Retain: the bucket stays, the claim's access goes
                await _blocking(objectstore.rgw, "DELETE", "stores", sid, "users", state["cephUser"])
            ob = self.store.get_or_none(OBC_GROUP, "objectbuckets", None, ob_name)
        if ob is not None:
            ob["metadata"]["finalizers"] = []
            self.store.update(OBC_GROUP, "objectbuckets", None, ob_name, ob)
            self.store.delete(OBC_GROUP, "objectbuckets", None, ob_name)
        for plural in ("secrets", "configmaps"):
            obj = self.store.get_or_none("", plural, ns, name)
            if obj and OBC_FINALIZER in (obj["metadata"].get("finalizers") or []):
                obj["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != OBC_FINALIZER]
                self.store.update("", plural, ns, name, obj)
        claim = self.store.get(OBC_GROUP, "objectbucketclaims", ns, name)
        claim["metadata"]["finalizers"] = [f for f in claim["metadata"].get("finalizers") or [] if f != OBC_FINALIZER]
        self.store.update(OBC_GROUP, "objectbucketclaims", ns, name, claim)
