"""Emulated Velero: the server (BSL, backup, sync, deletion, GC, status, restore, schedule) and the
node-agent, as controllers of one cluster.

`install(cluster)` registers the watcher that runs a VeleroServer while Velero is installed.
"""
from . import server  # noqa: F401  (imported first: it defines the base the sub-modules use)
from .server import CONTROLLERS, SERVERS, VeleroController, VeleroServer, install

__all__ = ["CONTROLLERS", "SERVERS", "VeleroController", "VeleroServer", "install", "server"]
