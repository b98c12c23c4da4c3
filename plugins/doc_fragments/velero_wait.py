# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  wait:
    description:
      - Wait for the object to reach a final state before returning.
      - Waiting follows a watch on the object (no polling), resumes dropped streams and
        retries transient API errors until O(wait_timeout).
      - Waiting is skipped in check mode.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait when O(wait=true).
      - On timeout the module fails and returns the last state it saw.
    type: int
    default: 600
"""
