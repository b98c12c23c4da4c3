"""Controllers that run inside every emulated cluster (see base.Controller)."""
from __future__ import annotations


def install_default_controllers(cluster) -> None:
    """Register the built-in control plane of one cluster. The daemon calls this per cluster."""
    from .gc import GarbageCollector
    from .namespaces import NamespaceController
    from .serviceaccounts import ServiceAccountController
    from .services import ServiceController
    from .storage import StorageController
    from .workloads import CronJobController, WorkloadController

    store = cluster.store
    hooks = getattr(store, "admission_hooks", None)
    if hooks is not None and admission not in hooks:
        hooks.append(admission)
    for controller_class in (WorkloadController, StorageController, GarbageCollector,
                             NamespaceController, ServiceController, ServiceAccountController,
                             CronJobController):
        cluster.add_controller(controller_class(cluster))

    # ---- in-cluster software (Velero server + node-agent watcher) registers below ----
    from .velero import install as install_velero  # velero part A: starts VeleroServer when installed
    install_velero(cluster)


def admission(store, rt, obj: dict, old: dict | None) -> None:
    """Synchronous admission of built-in kinds, run by the Store inside create/update (the
    parts of kube-apiserver's REST strategies and admission plugins that belong to this side)."""
    key = (rt.group, rt.plural)
    if key == ("", "services"):
        from .services import admit_service
        admit_service(store, obj, old)
    elif key in (("", "persistentvolumeclaims"), ("", "persistentvolumes")):
        from .storage import admit_protection
        admit_protection(obj, old, rt.plural)
