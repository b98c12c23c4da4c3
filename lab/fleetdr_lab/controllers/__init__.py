"""Controllers that run inside every emulated cluster (see base.Controller)."""
from __future__ import annotations

from .garbage_collector import GarbageCollector
from .namespaces import NamespaceController
from .serviceaccounts import ServiceAccountAdmission, ServiceAccountController
from .services import ServiceController
from .storage import StorageController, StorageProtection
from .workloads import CronJobController, WorkloadController

DEFAULT_CONTROLLERS = (WorkloadController, StorageController, GarbageCollector,
                       NamespaceController, ServiceController, ServiceAccountController,
                       CronJobController)


def install_default_controllers(cluster) -> None:
    """Register the built-in control plane of one cluster (and the admission plugin it
    brings) through the cluster's and the store's registration APIs."""
    cluster.store.register(StorageProtection())
    cluster.store.register(ServiceAccountAdmission())
    for controller_class in DEFAULT_CONTROLLERS:
        cluster.add_controller(controller_class(cluster))
