"""Controllers that run inside every emulated cluster (see base.Controller)."""
from __future__ import annotations


def install_default_controllers(cluster) -> None:
    """Register the built-in control plane of one cluster. The daemon calls this per cluster."""
    from .gc import GarbageCollector
    from .namespaces import NamespaceController
    from .serviceaccounts import ServiceAccountController
    from .services import ServiceController
    from .storage import StorageController
    from .workloads import WorkloadController

    for controller_class in (WorkloadController, StorageController, GarbageCollector,
                             NamespaceController, ServiceController, ServiceAccountController):
        cluster.add_controller(controller_class(cluster))

    # ---- in-cluster software (Velero server + node-agent watcher) registers below ----
    from .velero import install as install_velero  # velero part A: starts VeleroServer when installed
    install_velero(cluster)
