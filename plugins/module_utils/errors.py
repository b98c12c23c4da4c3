# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Exceptions shared by fleetdr.kube module_utils.

Every error carries a human message and a ``context`` dict that modules pass
straight into ``fail_json`` so the user sees which option or object is at fault.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class FleetdrError(Exception):
    """Base class: ``msg`` for the user, ``context`` for the result."""

    def __init__(self, msg, **context):
        super(FleetdrError, self).__init__(msg)
        self.msg = msg
        self.context = context


class ValidationError(FleetdrError):
    """Bad user input, detected before any API call. ``option`` names the culprit."""

    def __init__(self, option, msg, **context):
        full = "{0}: {1}".format(option, msg) if option else msg
        super(ValidationError, self).__init__(full, **context)
        self.option = option


class ConflictError(FleetdrError):
    """The cluster holds an object under the requested name that differs from the request."""


class NotFoundError(FleetdrError):
    """A referenced object (backup, schedule, location) does not exist."""


class ApiError(FleetdrError):
    """The Kubernetes API refused a call (after retries for transient failures)."""

    def __init__(self, msg, status=None, reason=None, body=None, **context):
        super(ApiError, self).__init__(msg, **context)
        self.status = status
        self.reason = reason
        self.body = body


class WaitTimeout(FleetdrError):
    """A wait reached its deadline; ``last`` is the last object state seen (or None)."""

    def __init__(self, msg, last=None, **context):
        super(WaitTimeout, self).__init__(msg, **context)
        self.last = last
