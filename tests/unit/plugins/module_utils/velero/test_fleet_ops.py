"""How fleet_ops builds each cluster's API client (no cluster needed: nothing is requested)."""
import ssl

import pytest

kubernetes = pytest.importorskip("kubernetes")

from ansible_collections.fleetdr.kube.plugins.module_utils.velero import fleet_ops  # noqa: E402


def kubeconfig(server="https://10.0.0.1:6443", proxy_url=None):
    cluster = {"server": server, "insecure-skip-tls-verify": False}
    if proxy_url:
        cluster["proxy-url"] = proxy_url
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "c1",
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "c1", "context": {"cluster": "c1", "user": "u1"}}],
    }


def run_with(proxies):
    run = fleet_ops.FleetRun("backup", "n", {})
    run.proxies = proxies
    return run


def test_kubeconfig_server_and_token_reach_the_client():
    api = fleet_ops._direct_api_client({"kubeconfig": kubeconfig()}, run_with({}))
    assert api.configuration.host == "https://10.0.0.1:6443"
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer secret-token"
    assert not api.configuration.proxy


def test_overrides_are_applied_before_the_connection_pool_is_built():
    api = fleet_ops._direct_api_client({"kubeconfig": kubeconfig(), "validate_certs": False, "host": "https://10.9.9.9"},
                                       run_with({}))
    assert api.configuration.host == "https://10.9.9.9"
    assert api.rest_client.pool_manager.connection_pool_kw["cert_reqs"] == ssl.CERT_NONE


def test_proxy_environment_read_once_per_run_applies_by_scheme_and_kubeconfig_proxy_wins():
    proxies = {"https": "http://proxy:3128", "no": "internal.example"}
    api = fleet_ops._direct_api_client({"kubeconfig": kubeconfig()}, run_with(proxies))
    assert api.configuration.proxy == "http://proxy:3128" and api.configuration.no_proxy == "internal.example"
    api = fleet_ops._direct_api_client({"kubeconfig": kubeconfig(proxy_url="http://kc-proxy:8080")}, run_with(proxies))
    assert api.configuration.proxy == "http://kc-proxy:8080"
    api = fleet_ops._direct_api_client({"host": "http://10.0.0.2:8080", "api_key": "t"}, run_with(proxies))
    assert not api.configuration.proxy  # only an https proxy was given
    assert api.configuration.auth_settings()["BearerToken"]["value"] == "Bearer t"
