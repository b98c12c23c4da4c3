"""The fleetdr-lab CLI and lab process, seen only through real clients.

The session `lab` is used for read-only and namespaced checks; anything that breaks, moves the
clock or stops a lab runs on a private lab (`private_lab`) so other tests are not disturbed.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3
import yaml
from botocore.exceptions import ClientError
from kubernetes import client as kclient
from kubernetes.client.rest import ApiException

from labctl import LabHandle, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
from fleetdr_lab import pki  # noqa: E402


@pytest.fixture(scope="module")
def private_lab(tmp_path_factory):
    handle = LabHandle(tmp_path_factory.mktemp("private-lab"))
    try:
        handle.cli("up", "--clusters", "2", "--nodes", "2")
        yield handle
    finally:
        handle.down()


def core(handle: LabHandle, cluster: str):
    return kclient.CoreV1Api(handle.api(cluster))


# -- files written by `up` -------------------------------------------------------------------

def test_kubeconfig_has_one_context_per_cluster_with_embedded_ca(lab):
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    names = [c["name"] for c in doc["contexts"]]
    assert names == lab.clusters == ["c1", "c2", "c3"]
    assert doc["current-context"] == "c1"
    ca = (lab.dir / "ca.crt").read_bytes()
    for ctx in doc["contexts"]:
        assert ctx["context"] == {"cluster": ctx["name"], "user": ctx["name"]}
    tokens = set()
    for cluster in doc["clusters"]:
        assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == ca
        assert cluster["cluster"]["server"].startswith("https://127.0.0.1:")
    for user in doc["users"]:
        tokens.add(user["user"]["token"])
    assert len(tokens) == 3  # a bearer token per cluster
    per_cluster = yaml.safe_load(lab.cluster_kubeconfig("c2").read_text())
    assert [c["name"] for c in per_cluster["contexts"]] == ["c2"]


def test_inventory_groups_and_vars(lab):
    inv = yaml.safe_load(lab.inventory.read_text())
    fleet = inv["all"]["children"]["fleet"]
    assert sorted(fleet["hosts"]) == ["c1", "c2", "c3"]
    c1 = fleet["hosts"]["c1"]
    assert fleet["vars"]["ansible_connection"] == "local" and "ansible_connection" not in c1
    assert c1["fleetdr_context"] == "c1"
    assert Path(c1["fleetdr_kubeconfig"]).exists()
    assert c1["fleetdr_cluster_labels"] == {"env": "prod", "region": "eu-west"}
    assert fleet["hosts"]["c2"]["fleetdr_cluster_labels"] == {"env": "staging",
                                                              "region": "us-east"}
    assert fleet["vars"]["fleetdr_s3_endpoint"] == lab.s3["endpoint"]
    assert fleet["vars"]["fleetdr_s3_bucket"] == "fleetdr"
    assert "access_key_id" not in json.dumps(inv)  # keys stay out of the inventory
    assert list(fleet["children"]["env_prod"]["hosts"]) == ["c1"]
    assert list(fleet["children"]["region_ap_south"]["hosts"]) == ["c3"]


def test_s3_files(lab):
    s3 = lab.s3
    assert s3["bucket"] == "fleetdr" and s3["region"] == "us-east-1"
    creds = (lab.dir / "credentials-velero").read_text()
    assert creds.startswith("[default]\n")
    assert f"aws_access_key_id={s3['access_key_id']}" in creds
    assert f"aws_secret_access_key={s3['secret_access_key']}" in creds


# -- clients against the lab -----------------------------------------------------------------

def test_kubectl_get_nodes(lab):
    out = lab.kubectl("get", "nodes", "-o", "json", context="c1").stdout
    nodes = json.loads(out)["items"]
    assert [n["metadata"]["name"] for n in nodes] == ["c1-node-1"]
    labels = nodes[0]["metadata"]["labels"]
    assert labels["topology.kubernetes.io/region"] == "eu-west"
    assert labels["topology.kubernetes.io/zone"] == "eu-west-a"
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_cluster_bootstrap_objects(lab):
    api = lab.api("c3")
    try:
        namespaces = {n.metadata.name for n in kclient.CoreV1Api(api).list_namespace().items}
        assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= namespaces
        sc = kclient.StorageV1Api(api).read_storage_class("standard")
        assert sc.provisioner == "fleetdr.lab/hostpath"
        assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
        assert sc.volume_binding_mode == "Immediate" and sc.reclaim_policy == "Delete"
        svc = kclient.CoreV1Api(api).read_namespaced_service("kubernetes", "default")
        assert svc.spec.ports[0].port == 443
        eps = kclient.CoreV1Api(api).read_namespaced_endpoints("kubernetes", "default")
        assert eps.subsets[0].ports[0].port == 6443
        lease = kclient.CoordinationV1Api(api).read_namespaced_lease("c3-node-1",
                                                                     "kube-node-lease")
        assert lease.spec.holder_identity == "c3-node-1"
        assert lease.metadata.owner_references[0].kind == "Node"
    finally:
        api.close()


def test_tls_is_verified_against_the_lab_ca(lab, tmp_path):
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    stranger = pki.make_ca("some-other-ca")
    for cluster in doc["clusters"]:
        cluster["cluster"]["certificate-authority-data"] = base64.b64encode(
            stranger.cert_pem).decode()
    wrong = tmp_path / "wrong-ca.yaml"
    wrong.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(["kubectl", "--kubeconfig", str(wrong), "--context", "c1",
                           "get", "nodes", "--request-timeout=10s"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "certificate" in proc.stderr.lower()


def test_wrong_token_is_unauthorized(lab, tmp_path):
    doc = yaml.safe_load(lab.kubeconfig.read_text())
    c2_token = next(u for u in doc["users"] if u["name"] == "c2")["user"]["token"]
    next(u for u in doc["users"] if u["name"] == "c1")["user"]["token"] = c2_token
    other = tmp_path / "swapped-token.yaml"
    other.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(["kubectl", "--kubeconfig", str(other), "--context", "c1",
                           "get", "ns", "--request-timeout=10s"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Unauthorized" in proc.stderr or "401" in proc.stderr


def _ansible_playbook() -> str | None:
    script = Path(sys.executable).with_name("ansible-playbook")
    return str(script) if script.exists() else None


def test_ansible_k8s_info_over_generated_inventory(lab, tmp_path):
    playbook_bin = _ansible_playbook()
    assert playbook_bin, "ansible-playbook is not installed next to %s" % sys.executable
    playbook = tmp_path / "info.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "fleet", "gather_facts": False,
        "tasks": [
            {"name": "list nodes", "kubernetes.core.k8s_info": {
                "kind": "Node",
                "kubeconfig": "{{ fleetdr_kubeconfig }}", "context": "{{ fleetdr_context }}"},
             "register": "nodes"},
            {"ansible.builtin.copy": {
                "dest": str(tmp_path) + "/{{ inventory_hostname }}.json",
                "content": "{{ nodes.resources | map(attribute='metadata.name') | list "
                           "| to_json }}"},
             "delegate_to": "localhost"},
        ]}]))
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([playbook_bin, "-i", str(lab.inventory), str(playbook),
                           "--limit", "env_prod:env_dev"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "c1.json").read_text()) == ["c1-node-1"]
    assert json.loads((tmp_path / "c3.json").read_text()) == ["c3-node-1"]
    assert not (tmp_path / "c2.json").exists()  # env_staging was not in --limit


# -- S3 ----------------------------------------------------------------------------------------

def test_s3_requires_the_generated_key(lab):
    good = lab.s3_client()
    key = f"test-cli/{time.time_ns()}.txt"
    good.put_object(Bucket="fleetdr", Key=key, Body=b"hello")
    assert good.get_object(Bucket="fleetdr", Key=key)["Body"].read() == b"hello"
    with pytest.raises(ClientError) as bad_secret:
        lab.s3_client(secret_access_key="not-the-secret").get_object(Bucket="fleetdr", Key=key)
    assert bad_secret.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as unknown_key:
        lab.s3_client("AKIAUNKNOWNKEY000000", "x").list_objects_v2(Bucket="fleetdr")
    assert unknown_key.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    good.delete_object(Bucket="fleetdr", Key=key)


def test_s3_revoke_and_restore(private_lab):
    s3 = private_lab.s3_client()
    s3.put_object(Bucket="fleetdr", Key="probe", Body=b"1")
    private_lab.cli("s3", "revoke")
    try:
        with pytest.raises(ClientError) as denied:
            s3.get_object(Bucket="fleetdr", Key="probe")
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        status = json.loads(private_lab.cli("status", "--json").stdout)
        assert status["s3"]["credentials_revoked"] is True
    finally:
        private_lab.cli("s3", "restore")
    assert s3.get_object(Bucket="fleetdr", Key="probe")["Body"].read() == b"1"


def test_s3_latency_slows_every_request_until_cleared(private_lab):
    s3 = private_lab.s3_client()
    s3.put_object(Bucket="fleetdr", Key="slow-probe", Body=b"1")
    assert "S3 latency 400 ms" in private_lab.cli("s3", "latency", "400").stdout
    try:
        started = time.monotonic()
        assert s3.get_object(Bucket="fleetdr", Key="slow-probe")["Body"].read() == b"1"
        assert time.monotonic() - started >= 0.4
        assert json.loads(private_lab.cli("status", "--json").stdout)["s3"]["latency_ms"] == 400
    finally:
        private_lab.cli("s3", "latency", "0")
    assert json.loads(private_lab.cli("status", "--json").stdout)["s3"]["latency_ms"] == 0
    proc = private_lab.cli("s3", "latency", "-5", check=False)
    assert proc.returncode == 2 and "must be >= 0" in proc.stderr


# -- up: idempotence and bad input -------------------------------------------------------------

def test_up_again_is_a_no_op(lab):
    if not lab.owned:
        pytest.skip("reusing an external lab")
    before = lab.state
    proc = lab.cli("up", "--clusters", "3")
    assert "already running" in proc.stdout
    after = lab.state
    assert after["pid"] == before["pid"]
    assert after["clusters"] == before["clusters"]


def test_up_with_another_size_on_a_running_lab_is_refused(lab):
    proc = lab.cli("up", "--clusters", "5", check=False)
    assert proc.returncode == 2
    assert "already running" in proc.stderr and "down" in proc.stderr
    assert lab.clusters == ["c1", "c2", "c3"]
    assert lab.cli("status").returncode == 0


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_up_rejects_bad_cluster_counts(tmp_path, value):
    proc = run_cli("up", "--clusters", value, lab_dir=tmp_path / "never", check=False)
    assert proc.returncode == 2
    assert "--clusters" in proc.stderr
    assert not (tmp_path / "never").exists()


def test_up_names_the_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # c1 gets the base port (checked first, so no other busy port can be named instead).
        proc = run_cli("up", "--clusters", "2", "--base-port", str(port),
                       lab_dir=tmp_path / "lab", check=False)
    assert proc.returncode == 3, proc.stderr
    assert f"port {port} (cluster c1) is already in use" in proc.stderr


def test_help_documents_exit_codes():
    out = run_cli("--help").stdout
    for code in ("0", "1", "2", "3", "4", "5"):
        assert f"\n  {code}  " in out
    assert "port is in use" in out and "unknown cluster" in out


@pytest.mark.parametrize("args", [
    ("down",), ("status",), ("seed", "busybox", "--cluster", "c1"), ("fault", "c1", "down"),
    ("clock", "show"), ("clock", "advance", "1h"), ("velero", "sync"), ("s3", "revoke"),
    ("image", "show"), ("image", "deny", "quay.io"),
])
def test_commands_on_a_lab_that_is_not_running_exit_4(tmp_path, args):
    proc = run_cli(*args, lab_dir=tmp_path, check=False)
    assert proc.returncode == 4, proc.stderr
    assert "no lab is running" in proc.stderr


# -- seed ----------------------------------------------------------------------------------------

def test_seed_busybox_is_idempotent(lab):
    ns = "cli-seed-busybox"
    first = lab.cli("seed", "busybox", "--cluster", "c2", "--namespace", ns)
    assert "Deployment cli-seed-busybox/busybox" in first.stdout
    api = lab.api("c2")
    try:
        apps = kclient.AppsV1Api(api)
        dep = apps.read_namespaced_deployment("busybox", ns)
        assert dep.metadata.labels["app"] == "busybox" and dep.spec.replicas == 1
        container = dep.spec.template.spec.containers[0]
        assert container.image.startswith("busybox")
        assert container.volume_mounts[0].mount_path == "/data"
        pvc = kclient.CoreV1Api(api).read_namespaced_persistent_volume_claim("busybox-data", ns)
        assert pvc.spec.resources.requests["storage"] == "1Gi"
        lab.cli("seed", "busybox", "--cluster", "c2", "--namespace", ns)
        again = apps.read_namespaced_deployment("busybox", ns)
        assert again.metadata.uid == dep.metadata.uid
        assert again.metadata.generation == dep.metadata.generation
    finally:
        api.close()


def test_seed_database_and_crd(lab):
    lab.cli("seed", "database", "--cluster", "c3", "--namespace", "cli-seed-db", "--storage-class", "fast")
    lab.cli("seed", "crd", "--cluster", "c3", "--namespace", "cli-seed-widgets")
    api = lab.api("c3")
    try:
        sts = kclient.AppsV1Api(api).read_namespaced_stateful_set("db", "cli-seed-db")
        assert sts.spec.volume_claim_templates[0].metadata.name == "data"
        assert sts.spec.volume_claim_templates[0].spec.storage_class_name == "fast"  # --storage-class
        corev1 = kclient.CoreV1Api(api)
        assert corev1.read_namespaced_secret("db-credentials", "cli-seed-db").data["username"]
        assert corev1.read_namespaced_config_map("db-config", "cli-seed-db").data
        assert corev1.read_namespaced_service("db", "cli-seed-db").spec.cluster_ip == "None"
        widget = kclient.CustomObjectsApi(api).get_namespaced_custom_object(
            "example.fleetdr.io", "v1", "cli-seed-widgets", "widgets", "sample-widget")
        assert widget["kind"] == "Widget"
    finally:
        api.close()


def test_seed_rejects_unknown_app_and_cluster(lab):
    bad_app = lab.cli("seed", "wordpress", "--cluster", "c1", check=False)
    assert bad_app.returncode == 2 and "wordpress" in bad_app.stderr
    bad_cluster = lab.cli("seed", "busybox", "--cluster", "c42", check=False)
    assert bad_cluster.returncode == 5 and "c42" in bad_cluster.stderr


# -- status ----------------------------------------------------------------------------------------

def test_status_json(lab):
    status = json.loads(lab.cli("status", "--json").stdout)
    assert [c["name"] for c in status["clusters"]] == lab.clusters
    for c in status["clusters"]:
        assert c["up"] is True
        assert c["objects"] >= 8  # 4 namespaces, node, storage class, service, ...
        assert c["object_counts"]["nodes"] == 1
    assert status["s3"]["endpoint"] == lab.s3["endpoint"]
    assert status["s3"]["bucket"] == "fleetdr" and status["s3"]["up"] is True
    text = lab.cli("status").stdout
    assert "c3" in text and lab.s3["endpoint"] in text


# -- faults -----------------------------------------------------------------------------------------

def test_nodes_option_creates_nodes_across_zones(private_lab):
    nodes = core(private_lab, "c2").list_node().items
    assert [n.metadata.name for n in nodes] == ["c2-node-1", "c2-node-2"]
    assert [n.metadata.labels["topology.kubernetes.io/zone"] for n in nodes] == [
        "us-east-a", "us-east-b"]


def test_fault_input_validation(private_lab):
    cases = [(("c1", "errors", "2"), 2), (("c1", "errors", "0.5", "418"), 2),
             (("c1", "latency", "abc"), 2), (("c1", "latency"), 2), (("c1", "down", "5"), 2),
             (("c1", "explode"), 2), (("c9", "down"), 5)]
    for args, code in cases:
        proc = private_lab.cli("fault", *args, check=False)
        assert proc.returncode == code, (args, proc.stderr)


def test_fault_down_refuses_connections_then_up_serves_again(private_lab):
    api = private_lab.api("c2")
    api.configuration.retries = False
    try:
        corev1 = kclient.CoreV1Api(api)
        assert corev1.list_namespace().items  # open a pooled keep-alive connection
        private_lab.cli("fault", "c2", "down")
        port = private_lab.cluster_info("c2")["port"]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(urllib3.exceptions.HTTPError):
            corev1.list_namespace(_request_timeout=5)
        status = json.loads(private_lab.cli("status", "--json").stdout)
        assert [c["up"] for c in status["clusters"]] == [True, False]
        # Other clusters are unaffected.
        assert core(private_lab, "c1").list_namespace().items
        private_lab.cli("fault", "c2", "up")
        assert private_lab.cluster_info("c2")["port"] == port
        assert corev1.list_namespace().items
    finally:
        private_lab.cli("fault", "c2", "clear", check=False)
        api.close()


def test_fault_errors_are_seen_by_clients(private_lab):
    api = private_lab.api("c1")
    api.configuration.retries = False
    try:
        corev1 = kclient.CoreV1Api(api)
        private_lab.cli("fault", "c1", "errors", "1", "503")
        with pytest.raises(ApiException) as err:
            corev1.list_namespace()
        assert err.value.status == 503
        private_lab.cli("fault", "c1", "errors", "1", "429")
        with pytest.raises(ApiException) as err:
            corev1.list_namespace()
        assert err.value.status == 429
        private_lab.cli("fault", "c1", "clear")
        assert corev1.list_namespace().items
    finally:
        private_lab.cli("fault", "c1", "clear", check=False)
        api.close()


def test_fault_latency_delays_responses(private_lab):
    api = private_lab.api("c1")
    try:
        corev1 = kclient.CoreV1Api(api)
        private_lab.cli("fault", "c1", "latency", "400")
        started = time.monotonic()
        corev1.list_namespace()
        assert time.monotonic() - started >= 0.4  # a lower bound only: never flaky
        status = json.loads(private_lab.cli("status", "--json").stdout)
        assert status["clusters"][0]["faults"]["latency_ms"] == 400
    finally:
        private_lab.cli("fault", "c1", "clear", check=False)
        api.close()


# -- clock ---------------------------------------------------------------------------------------------

def test_clock_advance_moves_lab_time(private_lab):
    shown = private_lab.cli("clock", "show").stdout
    assert "lab clock" in shown
    before = json.loads(private_lab.cli("status", "--json").stdout)["clock"]["offset_seconds"]
    private_lab.cli("clock", "advance", "1h30m")
    private_lab.cli("clock", "advance", "90s")
    after = json.loads(private_lab.cli("status", "--json").stdout)["clock"]["offset_seconds"]
    assert after - before == pytest.approx(5400 + 90)
    assert private_lab.state["clock_offset_seconds"] == pytest.approx(after)
    # Objects are stamped with lab time.
    corev1 = core(private_lab, "c1")
    ns = corev1.create_namespace({"metadata": {"name": f"clock-{time.time_ns()}"}})
    created = ns.metadata.creation_timestamp.timestamp()
    assert created >= time.time() + 5400 + 90 - 60
    bad = private_lab.cli("clock", "advance", "soon", check=False)
    assert bad.returncode == 2 and "duration" in bad.stderr
    negative = private_lab.cli("clock", "advance", "-5m", check=False)
    assert negative.returncode == 2


def test_velero_sync_route(private_lab):
    # No Velero is installed in the private lab: the route answers, syncing nothing.
    proc = private_lab.cli("velero", "sync")
    assert json.loads(proc.stdout) == {"synced": {}}
    proc = private_lab.cli("velero", "sync", "--cluster", "c9", check=False)
    assert proc.returncode == 5


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent has not reaped it


# -- down --------------------------------------------------------------------------------------------

def test_killed_lab_is_reported_down_restarts_and_stops_cleanly(lab_factory):
    handle = lab_factory(clusters=1)
    pid = handle.state["pid"]
    s3_port = int(handle.s3["endpoint"].rsplit(":", 1)[1])
    os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = handle.cli("status", check=False)
    assert status.returncode == 4
    assert f"process {pid} exited without `down`" in status.stderr
    # moto is tied to the lab process: it must not outlive it.
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", s3_port), timeout=1).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("moto kept running after the lab process was killed")
    handle.cli("up", "--clusters", "1")
    assert handle.state["pid"] != pid
    assert core(handle, "c1").list_namespace().items
    check_down_stops_everything_and_keeps_the_dir(handle)


def check_down_stops_everything_and_keeps_the_dir(handle: LabHandle) -> None:
    state = handle.state
    pid, s3_endpoint = state["pid"], handle.s3["endpoint"]
    port = state["clusters"][0]["port"]
    assert handle.cli("down").returncode == 0
    assert not _alive(pid)
    assert not (handle.dir / "lab.pid").exists()
    for kept in ("kubeconfig", "inventory.yml", "s3.json", "ca.crt", "lab.log"):
        assert (handle.dir / kept).exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    s3_port = int(s3_endpoint.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # moto went with the lab
        socket.create_connection(("127.0.0.1", s3_port), timeout=5).close()
    again = handle.cli("down", check=False)
    assert again.returncode == 4
    assert handle.cli("status", check=False).returncode == 4


# -- in-process pieces: the lab clock and error collection ---------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("1.5h", 5400), ("500ms", 0.5), ("0", 0), ("2d3h4m5s", 2 * 86400 + 3 * 3600 + 245)])
def test_parse_duration(text, seconds):
    from fleetdr_lab.clock import parse_duration
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "h", "1x", "-5m", "1h 30m", "m5"])
def test_parse_duration_rejects(text):
    from fleetdr_lab.clock import parse_duration
    with pytest.raises(ValueError):
        parse_duration(text)


def test_clock_sleep_until_is_woken_by_advance():
    import asyncio
    from fleetdr_lab.clock import Clock

    async def scenario():
        clock = Clock()
        target = clock.time() + 3600
        sleeper = asyncio.ensure_future(clock.sleep_until(target))
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        clock.advance(1800)  # not far enough: keeps sleeping
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        clock.advance(1800)
        await asyncio.wait_for(sleeper, timeout=30)
        assert clock.time() >= target
        with pytest.raises(ValueError):
            clock.advance(-1)

    asyncio.run(scenario())


def test_logged_errors_are_attributed_to_clusters(tmp_path):
    import logging
    from fleetdr_lab.daemon import ErrorCollector, Lab

    lab = Lab(tmp_path, clusters=2)
    lab.clusters = {"c1": object(), "c2": object()}
    collector = ErrorCollector(lab)
    logger = logging.getLogger("fleetdr_lab.controllers.test")
    logger.addHandler(collector)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("%s/%s: reconcile %s failed", "c2", "workloads", "ns/x")
        logging.getLogger("fleetdr_lab.cluster.c1").addHandler(collector)
        logging.getLogger("fleetdr_lab.cluster.c1").error("site broke")
        logger.warning("not an error")
    finally:
        logger.removeHandler(collector)
        logging.getLogger("fleetdr_lab.cluster.c1").removeHandler(collector)
    assert [(e["cluster"], e["error"]) for e in lab.errors] == [
        ("c2", "c2/workloads: reconcile ns/x failed: RuntimeError: boom"),
        ("c1", "site broke")]


def test_a_hundred_clusters(lab_factory):
    handle = lab_factory(clusters=100)
    assert len(handle.clusters) == 100
    inv = yaml.safe_load(handle.inventory.read_text())["all"]["children"]["fleet"]
    assert len(inv["hosts"]) == 100
    assert len(inv["children"]["env_prod"]["hosts"]) == 34  # c1, c4, ..., c100
    ports = {c["port"] for c in handle.state["clusters"]}
    assert len(ports) == 100
    out = handle.kubectl("get", "nodes", "-o", "name", context="c100").stdout
    assert out.strip() == "node/c100-node-1"
    status = json.loads(handle.cli("status", "--json").stdout)
    assert all(c["up"] and c["objects"] > 0 for c in status["clusters"])


def test_lab_process_reports_a_port_taken_after_the_cli_checked(tmp_path):
    # The race the CLI's pre-check cannot close: the lab process itself must say which port.
    from labctl import cli_env
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "fleetdr_lab.daemon", "--dir",
                               str(tmp_path), "--clusters", "1", "--base-port", str(port - 1)],
                              capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 3
    state = json.loads((tmp_path / "lab.json").read_text())
    assert state["state"] == "failed" and state["exit_code"] == 3
    assert state["port"] in (port - 1, port)  # port - 1 may be taken by someone else too
    assert "already in use" in state["error"]
    assert not (tmp_path / "lab.pid").exists()
