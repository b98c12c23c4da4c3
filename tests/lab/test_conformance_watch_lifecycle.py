"""Watch streams release their store watch when the client goes away or the stream times out.

That is invisible through the lab's public surface, so these tests serve `make_app` in-process
on a real Store and talk to it with aiohttp's HTTP client.
"""
from __future__ import annotations

import asyncio
import json
import types

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from fleetdr_lab.api import make_app  # noqa: E402
from fleetdr_lab.cluster import KUBE_VERSION  # noqa: E402
from fleetdr_lab.strategies import new_store  # noqa: E402

TOKEN = "in-process-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_cluster():
    store = new_store()
    store.apply_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    faults = types.SimpleNamespace(down=False, latency_ms=0, error_rate=0.0, error_code=500)
    cluster = types.SimpleNamespace(name="inproc", store=store, token=TOKEN, faults=faults,
                                    port=0, labels={}, kube_version=KUBE_VERSION)
    opened = []
    real_watch = store.watch

    def recording_watch(*args, **kwargs):
        w = real_watch(*args, **kwargs)
        opened.append(w)
        return w

    store.watch = recording_watch
    return cluster, opened


async def wait_until(predicate, limit=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate() and loop.time() < deadline:
        await asyncio.sleep(0.05)
    return predicate()


def test_client_disconnect_closes_store_watch():
    cluster, opened = make_cluster()

    async def scenario():
        async with TestClient(TestServer(make_app(cluster))) as http:
            resp = await http.get("/api/v1/namespaces/default/configmaps",
                                  params={"watch": "true"}, headers=AUTH)
            assert resp.status == 200
            cluster.store.create("", "configmaps", "default", {"metadata": {"name": "a"}})
            line = await resp.content.readline()
            assert json.loads(line)["type"] == "ADDED"
            assert len(opened) == 1 and not opened[0].closed
            resp.close()  # the client hangs up without waiting for the server
            assert await wait_until(lambda: opened[0].closed)

    asyncio.run(scenario())


def test_timeout_ends_stream_and_closes_store_watch():
    cluster, opened = make_cluster()

    async def scenario():
        async with TestClient(TestServer(make_app(cluster))) as http:
            resp = await http.get("/api/v1/namespaces/default/configmaps",
                                  params={"watch": "1", "timeoutSeconds": "1",
                                          "allowWatchBookmarks": "true"}, headers=AUTH)
            events = [json.loads(line) for line in (await resp.text()).splitlines() if line]
            assert [e["type"] for e in events] == ["BOOKMARK"]
            assert opened[0].closed

    asyncio.run(scenario())


def test_faults_apply_in_process():
    cluster, _ = make_cluster()

    async def scenario():
        async with TestClient(TestServer(make_app(cluster))) as http:
            cluster.faults.error_rate, cluster.faults.error_code = 1.0, 429
            resp = await http.get("/api/v1/namespaces", headers=AUTH)
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            body = await resp.json()
            assert body["details"] == {"retryAfterSeconds": 1}
            cluster.faults.error_rate = 0.0
            resp = await http.get("/api/v1/namespaces", headers=AUTH)
            assert resp.status == 200 and resp.headers["Audit-Id"]

    asyncio.run(scenario())
