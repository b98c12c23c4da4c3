# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Deterministic, Kubernetes-valid names and ownership labels.

Velero copies object names into label values (``velero.io/backup-name``,
``velero.io/schedule-name``), so every name we make stays within 63 characters.
A name that would be longer keeps a readable prefix and ends with a hash of the
full name, so two long names never collide by truncation.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError

MAX_NAME = 63
# Schedules name their backups "<schedule>-<YYYYMMDDhhmmss>" (15 more characters).
MAX_SCHEDULE_NAME = MAX_NAME - 15
HASH_LEN = 10

LABEL_PREFIX = "fleetdr.kube"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OPERATION = LABEL_PREFIX + "/operation"
LABEL_OPERATION_NAME = LABEL_PREFIX + "/operation-name"
LABEL_CLUSTER = LABEL_PREFIX + "/cluster"
ANNOTATION_REQUESTED_SPEC = LABEL_PREFIX + "/requested-spec"
# On a location whose bucket is a claim on another cluster's Rook object store: that inventory host
ANNOTATION_VAULT = LABEL_PREFIX + "/vault-cluster"
MANAGED_BY_VALUE = "fleetdr.kube"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def short_hash(text, length=HASH_LEN):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _sanitize(text):
    text = re.sub(r"[^a-z0-9-]+", "-", str(text).lower())
    text = re.sub(r"-{2,}", "-", text)
    return text.strip("-")


def make_name(*parts, **kwargs):
    """Join ``parts`` into a DNS-1123 label of at most ``max_length`` characters.

    Invalid characters become '-'. When the result is too long (or sanitising
    changed the text, which could make two inputs collide) the name is cut and
    suffixed with a hash of the original parts.
    """
    max_length = kwargs.get("max_length", MAX_NAME)
    raw = "-".join(str(p) for p in parts if p not in (None, ""))
    clean = _sanitize(raw)
    if not clean:
        raise ValueError("cannot build a name from %r" % (parts,))
    if len(clean) <= max_length and clean == raw:
        return clean
    if len(clean) <= max_length - HASH_LEN - 1 and clean != raw:
        return "{0}-{1}".format(clean, short_hash(raw))
    if len(clean) <= max_length:
        return clean
    keep = max_length - HASH_LEN - 1
    return "{0}-{1}".format(clean[:keep].rstrip("-"), short_hash(raw))


def label_value(text):
    """A label-safe value for ``text`` (as Velero's GetValidName, but hashed with our length)."""
    text = str(text)
    if len(text) <= MAX_NAME and LABEL_VALUE.match(text):
        return text
    return make_name(text)


def is_dns1123_label(name):
    return bool(name) and len(name) <= MAX_NAME and bool(_DNS1123_LABEL.match(name))


def validate_object_name(name, option="name", max_length=MAX_NAME):
    """Fail (ValidationError naming ``option``) unless ``name`` is a valid, short object name."""
    if not name:
        raise ValidationError(option, "must not be empty")
    if len(name) > max_length:
        raise ValidationError(
            option,
            "'{0}' is {1} characters long; at most {2} are allowed because Velero copies "
            "this name into label values".format(name, len(name), max_length),
        )
    if not _DNS1123_SUBDOMAIN.match(name):
        raise ValidationError(
            option,
            "'{0}' is not a valid Kubernetes name (lower case alphanumerics, '-' and '.', "
            "starting and ending with an alphanumeric)".format(name),
        )
    return name


def validate_labels(labels, option="labels"):
    """Check keys and values of a label map the way the API server does."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ValidationError(option, "must be a dictionary of label names to values")
    for key, value in labels.items():
        key = str(key)
        prefix, sep, name = key.rpartition("/")
        if sep and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
            raise ValidationError(option, "label key '{0}' has an invalid prefix".format(key))
        if not name or len(name) > MAX_NAME or not _LABEL_NAME.match(name):
            raise ValidationError(option, "label key '{0}' is not a valid label name".format(key))
        value = "" if value is None else str(value)
        if len(value) > MAX_NAME or not LABEL_VALUE.match(value):
            raise ValidationError(option, "value '{0}' of label '{1}' is not a valid label value".format(value, key))
    return dict((str(k), "" if v is None else str(v)) for k, v in labels.items())


def fleet_object_name(operation_name, cluster, max_length=MAX_NAME):
    """Name of the object a fleet operation creates in one cluster.

    The cluster is part of the name because clusters sharing a bucket must never
    reuse a backup name (Velero fails a backup whose name already exists in storage).
    """
    return make_name(operation_name, cluster, max_length=max_length)


def ownership_labels(operation, operation_name, cluster=None):
    """Labels tying an object to the fleet operation that made it."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY_VALUE,
        LABEL_OPERATION: label_value(operation),
        LABEL_OPERATION_NAME: label_value(operation_name),
    }
    if cluster:
        labels[LABEL_CLUSTER] = label_value(cluster)
    return labels
