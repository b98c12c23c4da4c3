# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Module plumbing shared by the Velero and Rook modules: construction, client, error handling."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import (
    ApiError,
    ConflictError,
    FleetdrError,
    ValidationError,
    WaitTimeout,
)
from ansible_collections.fleetdr.kube.plugins.module_utils.client import (
    HAS_K8S,
    HAS_K8S_CORE,
    K8S_IMPORT_ERROR,
    client_from_params,
)

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
except ImportError:  # pragma: no cover - reported through HAS_K8S_CORE
    AnsibleK8SModule = None


def kube_module(argument_spec, **kwargs):
    """An AnsibleK8SModule (kubernetes.core's wrapper: dependency checks, kubeconfig redaction)."""
    if AnsibleK8SModule is None or not HAS_K8S_CORE:
        module = AnsibleModule(argument_spec=argument_spec, **kwargs)
        module.fail_json(msg=missing_required_lib("the kubernetes.core collection"))
    if not HAS_K8S:
        module = AnsibleModule(argument_spec=argument_spec, **kwargs)
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=str(K8S_IMPORT_ERROR))
    return AnsibleK8SModule(argument_spec=argument_spec, check_pyyaml=False, **kwargs)


def get_client(module, cluster=None, namespace=None):
    return client_from_params(module.params, module=module, cluster=cluster, namespace=namespace)


def no_log_values(module):
    """The set Ansible masks in output; values we read from Secrets go here too."""
    inner = getattr(module, "_module", module)
    return inner.no_log_values


def run_module(module, action, **context):
    """Run ``action()`` -> result dict and exit; every known error becomes fail_json with context."""
    try:
        result = action()
    except ValidationError as exc:
        module.fail_json(msg=exc.msg, option=exc.option, changed=False, **exc.context)
    except (ConflictError, WaitTimeout) as exc:
        module.fail_json(msg=exc.msg, **exc.context)
    except ApiError as exc:
        module.fail_json(msg=exc.msg, status=exc.status, **exc.context)
    except FleetdrError as exc:
        module.fail_json(msg=exc.msg, **exc.context)
    except Exception as exc:
        module.fail_json(msg="{0}: {1}".format(type(exc).__name__, exc), exception=traceback.format_exc(), **context)
    module.exit_json(**result)
