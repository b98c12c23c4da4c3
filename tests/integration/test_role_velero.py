# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Role fleetdr.kube.velero against a 3-cluster lab, through ansible-playbook and the lab's inventory.

Install on all clusters -> BSL Available -> second run changes nothing -> uninstall removes the
objects but leaves the backup data in the bucket. State is checked with the kubernetes client.
The lab is private to this module: the role owns namespace `velero` on every cluster.
"""

import base64
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labctl import LabHandle  # noqa: E402
from fleet_helpers import recap  # noqa: E402

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
CRDS = sorted(yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "roles/velero/files/crds").glob("*.yaml"))


@pytest.fixture(scope="module")
def fleet_lab(tmp_path_factory):
    directory = tmp_path_factory.mktemp("role-velero-lab")
    handle = LabHandle.up(directory, clusters=3)
    try:
        yield handle
    finally:
        handle.down()


@pytest.fixture(scope="module")
def play(fleet_lab, collections, tmp_path_factory):
    work = tmp_path_factory.mktemp("role-velero-play")
    s3 = fleet_lab.s3
    secrets = work / "secrets.yml"
    secrets.write_text(yaml.safe_dump({
        "velero_s3_access_key_id": s3["access_key_id"],
        "velero_s3_secret_access_key": s3["secret_access_key"],
    }))
    playbook = work / "install.yml"
    playbook.write_text(textwrap.dedent("""
        - name: Velero on the fleet
          hosts: fleet
          gather_facts: false
          roles:
            - role: fleetdr.kube.velero
    """))

    def run(*extra):
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORKS": "3",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
        })
        proc = subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(fleet_lab.inventory), "-e", "@%s" % secrets, str(playbook), *extra],
            cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
        return proc

    run.work = work
    return run


def k8s(fleet_lab, cluster):
    from kubernetes import client

    api = fleet_lab.api(cluster)
    return api, client


def get_or_none(fn, *args):
    from kubernetes.client.rest import ApiException

    try:
        return fn(*args)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_install_idempotence_and_uninstall(fleet_lab, play):
    s3 = fleet_lab.s3

    # -- fresh install on all three clusters ------------------------------------------------------
    first = play()
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert s3["secret_access_key"] not in first.stdout  # secure logging
    counts = recap(first)
    assert sorted(counts) == ["c1", "c2", "c3"]
    assert all(c["failed"] == 0 and c["changed"] > 0 for c in counts.values()), counts

    for cluster in fleet_lab.clusters:
        api, client = k8s(fleet_lab, cluster)
        with api:
            custom = client.CustomObjectsApi(api)
            bsl = custom.get_namespaced_custom_object("velero.io", "v1", "velero", "backupstoragelocations", "default")
            assert bsl["status"]["phase"] == "Available"
            assert bsl["spec"]["objectStorage"] == {"bucket": s3["bucket"], "prefix": cluster}
            assert bsl["spec"]["default"] is True and bsl["spec"]["provider"] == "aws"
            assert bsl["spec"]["config"] == {"region": s3["region"], "s3ForcePathStyle": "true", "s3Url": s3["endpoint"]}

            deploy = client.AppsV1Api(api).read_namespaced_deployment("velero", "velero")
            available = [c for c in deploy.status.conditions or [] if c.type == "Available"]
            assert available and available[0].status == "True"
            pod = deploy.spec.template.spec
            assert pod.containers[0].image == "velero/velero:v1.18.1"
            assert pod.containers[0].args == ["server", "--features=", "--uploader-type=kopia"]
            assert [(c.name, c.image) for c in pod.init_containers] == [
                ("velero-velero-plugin-for-aws", "velero/velero-plugin-for-aws:v1.14.0")]
            assert pod.service_account_name == "velero"

            secret = client.CoreV1Api(api).read_namespaced_secret("cloud-credentials", "velero")
            cloud = base64.b64decode(secret.data["cloud"]).decode()
            assert "aws_access_key_id=%s" % s3["access_key_id"] in cloud
            assert "aws_secret_access_key=%s" % s3["secret_access_key"] in cloud

            crb = client.RbacAuthorizationV1Api(api).read_cluster_role_binding("velero")
            assert crb.role_ref.name == "cluster-admin"
            assert [(s.kind, s.name, s.namespace) for s in crb.subjects] == [("ServiceAccount", "velero", "velero")]

            names = sorted(c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
                           if c.spec.group == "velero.io")
            assert names == CRDS
            # node-agent is off by default
            assert get_or_none(client.AppsV1Api(api).read_namespaced_daemon_set, "node-agent", "velero") is None

    # -- the second run changes nothing -----------------------------------------------------------
    second = play()
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    assert all(c["changed"] == 0 and c["failed"] == 0 for c in recap(second).values()), \
        "\n".join(line for line in second.stdout.splitlines() if line.startswith("changed:"))

    # -- check + diff mode shows each object's change and writes nothing ------------------------------
    api, client = k8s(fleet_lab, "c1")
    with api:
        before = client.AppsV1Api(api).read_namespaced_deployment("velero", "velero").metadata.resource_version
    diff = play("--check", "--diff", "--limit", "c1", "-e", "velero_version=v1.18.0")
    assert diff.returncode == 0, diff.stdout[-6000:] + diff.stderr[-3000:]
    # the Deployment's diff: the image before and after
    assert "velero/velero:v1.18.1" in diff.stdout and "velero/velero:v1.18.0" in diff.stdout, diff.stdout[-4000:]
    assert recap(diff)["c1"]["changed"] > 0
    assert s3["secret_access_key"] not in diff.stdout
    api, client = k8s(fleet_lab, "c1")
    with api:
        assert client.AppsV1Api(api).read_namespaced_deployment("velero", "velero").metadata.resource_version == before

    # -- data written under a cluster's prefix survives the uninstall ------------------------------
    bucket = fleet_lab.s3_client()
    marker = "c1/backups/kept-by-uninstall/velero-backup.json"
    bucket.put_object(Bucket=s3["bucket"], Key=marker, Body=b"{}")

    third = play("-e", "velero_state=absent")
    assert third.returncode == 0, third.stdout[-6000:] + third.stderr[-3000:]
    for cluster in fleet_lab.clusters:
        api, client = k8s(fleet_lab, cluster)
        with api:
            core = client.CoreV1Api(api)
            assert get_or_none(core.read_namespace, "velero") is None
            assert get_or_none(client.RbacAuthorizationV1Api(api).read_cluster_role_binding, "velero") is None
            assert [c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
                    if c.spec.group == "velero.io"] == []
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket=s3["bucket"], Prefix="c1/").get("Contents", [])]
    assert marker in keys


def test_helm_values_render_without_installing(fleet_lab, play):
    dest = play.work / "values-c2.yml"
    proc = play("--tags", "velero_helm_values", "--limit", "c2", "-e", "velero_install_method=helm",
                "-e", "velero_node_agent=true", "-e", "velero_helm_values_dest=%s" % dest)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    values = yaml.safe_load(dest.read_text())
    s3 = fleet_lab.s3
    assert values["image"] == {"repository": "velero/velero", "tag": "v1.18.1", "pullPolicy": "IfNotPresent"}
    assert values["initContainers"][0]["image"] == "velero/velero-plugin-for-aws:v1.14.0"
    assert values["initContainers"][0]["volumeMounts"] == [{"mountPath": "/target", "name": "plugins"}]
    assert values["credentials"] == {"useSecret": True, "existingSecret": "cloud-credentials"}
    assert values["deployNodeAgent"] is True and values["snapshotsEnabled"] is False
    assert values["configuration"]["uploaderType"] == "kopia"
    assert values["configuration"]["backupStorageLocation"] == [{
        "name": "default", "provider": "aws", "bucket": s3["bucket"], "prefix": "c2", "default": True,
        "accessMode": "ReadWrite",
        "config": {"region": s3["region"], "s3ForcePathStyle": "true", "s3Url": s3["endpoint"]},
    }]
    assert values["configuration"]["volumeSnapshotLocation"] == []
    # the keys never land in the values
    assert s3["secret_access_key"] not in dest.read_text()
    # nothing was installed: rendering only
    api, client = k8s(fleet_lab, "c2")
    with api:
        assert get_or_none(client.CoreV1Api(api).read_namespace, "velero") is None


def test_server_manifest_follows_velero_install(collections, tmp_path):
    """server.yml.j2 rendered alone (no lab): init container names, pull policies, args, node-agent."""
    role = REPO / "roles" / "velero"
    out = tmp_path / "server.yml"
    playbook = tmp_path / "render.yml"
    playbook.write_text(textwrap.dedent("""
        - hosts: localhost
          gather_facts: false
          vars_files: [{defaults}, {vars}]
          tasks:
            - ansible.builtin.copy:
                content: "{{{{ lookup('ansible.builtin.template', '{template}') }}}}"
                dest: {out}
                mode: "0644"
    """).format(defaults=role / "defaults/main.yml", vars=role / "vars/main.yml",
                template=role / "templates/server.yml.j2", out=out))
    overrides = tmp_path / "overrides.yml"  # extra vars: above the role files' precedence
    overrides.write_text(yaml.safe_dump({
        "velero_version": "latest",
        "velero_plugins": ["registry.example.com:5000/velero/velero-plugin-for-aws:v1.13.0",
                           "velero/velero-plugin-for-csi@sha256:0123"],
        "velero_features": ["EnableCSI", "EnableAPIGroupVersions"],
        "velero_default_volumes_to_fs_backup": True,
        "velero_node_agent": True,
    }))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e",
                           "ansible_python_interpreter=%s" % sys.executable, "-e", "@%s" % overrides, str(playbook)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    deployment, daemonset = list(yaml.safe_load_all(out.read_text()))
    pod = deployment["spec"]["template"]["spec"]
    assert [(c["name"], c["imagePullPolicy"]) for c in pod["initContainers"]] == [
        ("velero-velero-plugin-for-aws", "IfNotPresent"), ("velero-velero-plugin-for-csi", "Always")]
    server = pod["containers"][0]
    assert server["image"] == "velero/velero:latest" and server["imagePullPolicy"] == "Always"
    assert server["args"] == ["server", "--features=EnableCSI,EnableAPIGroupVersions", "--uploader-type=kopia",
                              "--default-volumes-to-fs-backup=true"]
    assert {"name": "AWS_SHARED_CREDENTIALS_FILE", "value": "/credentials/cloud"} in server["env"]
    assert deployment["spec"]["selector"] == {"matchLabels": {"deploy": "velero"}}
    assert daemonset["kind"] == "DaemonSet" and daemonset["metadata"]["name"] == "node-agent"
    agent = daemonset["spec"]["template"]["spec"]
    assert agent["containers"][0]["args"] == ["node-agent", "server", "--features=EnableCSI,EnableAPIGroupVersions"]
    assert agent["securityContext"] == {"runAsUser": 0}
