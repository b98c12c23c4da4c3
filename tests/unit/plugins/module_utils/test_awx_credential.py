# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX credential type "fleetdr fleet" (extensions/awx/credential_types.yml) reaches each cluster
through the collection's existing path: the injected kubeconfig file arrives as fleetdr_kubeconfig,
each inventory host keeps its own fleetdr_context, and ClusterClients builds that cluster's client."""

import base64
import os

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ansible_collections.fleetdr.kube.plugins.module_utils import client
from ansible_collections.fleetdr.kube.plugins.module_utils.fleet import CLUSTER_HOSTVARS, cluster_from_hostvars

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


def fleet_kubeconfig():
    """What an operator pastes into the credential: one context per cluster, CA and token inline."""
    clusters = [("prod-eu-1", "https://10.1.0.1:6443", "token-eu-1"), ("prod-us-1", "https://10.2.0.1:6443", "token-us-1")]
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod-eu-1",
        "clusters": [{"name": n, "cluster": {"server": s, "certificate-authority-data": CA}} for n, s, _t in clusters],
        "users": [{"name": n, "user": {"token": t}} for n, _s, t in clusters],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n, _s, _t in clusters],
    })


def inject(ctype, inputs, private_dir):
    """AWX's injection: file templates written into the job's private dir, then env and extra_vars rendered."""
    env = ImmutableSandboxedEnvironment()
    filenames = {}
    for key, template in ctype["injectors"]["file"].items():
        name = key.split(".", 1)[1]
        path = os.path.join(private_dir, "tmp_" + name)
        with open(path, "w") as handle:
            handle.write(env.from_string(template).render(**inputs))
        filenames[name] = path
    context = dict(inputs, tower={"filename": filenames})
    extra_vars = dict((k, env.from_string(v).render(**context)) for k, v in ctype["injectors"]["extra_vars"].items())
    environ = dict((k, env.from_string(v).render(**context)) for k, v in ctype["injectors"]["env"].items())
    return extra_vars, environ


def test_each_host_reaches_its_own_cluster_with_the_injected_kubeconfig(tmp_path):
    with open(os.path.join(REPO, "extensions", "awx", "credential_types.yml")) as handle:
        (ctype,) = yaml.load(handle, Loader=_Loader)["controller_credential_types"]
    inputs = {"kubeconfig": fleet_kubeconfig(), "s3_access_key_id": "AKIAEXAMPLE", "s3_secret_access_key": "s3-secret"}
    extra_vars, environ = inject(ctype, inputs, str(tmp_path))
    assert environ["KUBECONFIG"] == extra_vars["fleetdr_kubeconfig"] and os.path.isfile(extra_vars["fleetdr_kubeconfig"])
    assert extra_vars["velero_s3_secret_access_key"] == "s3-secret"

    inventory = {"prod-eu-1": {"fleetdr_context": "prod-eu-1", "fleetdr_cluster_labels": {"env": "prod", "region": "eu"}},
                 "prod-us-1": {"fleetdr_context": "prod-us-1", "fleetdr_cluster_labels": {"env": "prod", "region": "us"}}}
    clients = client.ClusterClients()
    clients.proxies = {}
    seen = {}
    for host, host_vars in inventory.items():
        hostvars = dict(host_vars, **extra_vars)  # extra vars reach every host's hostvars
        cluster = cluster_from_hostvars(host, dict((key, hostvars.get(key)) for key in CLUSTER_HOSTVARS))
        assert cluster["auth"] == {"kubeconfig": extra_vars["fleetdr_kubeconfig"], "context": host}
        kube = clients.connect(cluster)
        configuration = kube.api_client.configuration
        seen[host] = (configuration.host, configuration.auth_settings()["BearerToken"]["value"], kube.context)
        assert configuration.ca_cert_data and not configuration.ssl_ca_cert  # the kubeconfig's CA, passed as data
    assert seen == {"prod-eu-1": ("https://10.1.0.1:6443", "Bearer token-eu-1", "prod-eu-1"),
                    "prod-us-1": ("https://10.2.0.1:6443", "Bearer token-us-1", "prod-us-1")}
