"""Workload controllers of an emulated cluster (see controller.WorkloadController) and CronJobs."""
from __future__ import annotations

from .controller import WorkloadController
from .cronjobs import CronJobController
from .pods import register_init_container_gate
from .podspec import int_or_percent, node_fits, normalize_image

__all__ = ["CronJobController", "WorkloadController", "int_or_percent", "node_fits", "normalize_image",
           "register_init_container_gate"]
