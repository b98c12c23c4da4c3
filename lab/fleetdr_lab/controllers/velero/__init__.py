"""Emulated Velero: server (part A: BSL, backup, sync, deletion, GC, status) and part B controllers.

`install(cluster)` registers the watcher that runs a VeleroServer while Velero is installed.
"""
from . import server  # noqa: F401  (imported first: it defines the base the sub-modules use)
from .server import CONTROLLERS, SERVERS, VeleroController, VeleroServer, install

__all__ = ["CONTROLLERS", "SERVERS", "VeleroController", "VeleroServer", "install", "server"]
