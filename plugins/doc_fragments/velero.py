# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Options every Velero module takes besides kubernetes.core's authentication options.
    DOCUMENTATION = r"""
options:
  velero_namespace:
    description:
      - Namespace Velero is installed in.
      - The Velero server only acts on its objects in this namespace.
    type: str
    default: velero
requirements:
  - kubernetes >= 24.2.0
"""
