# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Rook's release manifests (crds.yaml, common.yaml, csi-operator.yaml, operator.yaml) as objects.

They are read once on the controller, from a local directory (air-gapped fleets, or the lab's
``fleetdr-lab rook manifests``) or from the release's ``deploy/examples`` on GitHub, in the
quickstart's order (Rook Documentation/Getting-Started/quickstart.md). Non-default namespaces
are set the way Rook's own scripts do: on the lines carrying the marker comments
``# namespace:operator``, ``# namespace:cluster`` and ``# csi-provisioner-name``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible.module_utils.urls import open_url

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError

try:
    import yaml
    _LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
except ImportError:  # pragma: no cover - kubernetes needs PyYAML
    yaml = None

FILES = ("crds.yaml", "common.yaml", "csi-operator.yaml", "operator.yaml")
OPTIONAL = ("csi-operator.yaml",)  # Rook releases before v1.15 have none
RELEASE_URL = "https://raw.githubusercontent.com/rook/rook/{version}/deploy/examples/{name}"
DEFAULT_NAMESPACE = "rook-ceph"
_MARKED = re.compile(r"^(\s*(?:-\s+)?[\w.-]+:\s*)(\S+)(\s*#\s*(namespace:operator|namespace:cluster|csi-provisioner-name)\b.*)$")


def _rewrite(text, operator_namespace, cluster_namespace):
    if operator_namespace == DEFAULT_NAMESPACE and cluster_namespace == DEFAULT_NAMESPACE:
        return text
    lines = []
    for line in text.splitlines(True):
        match = _MARKED.match(line.rstrip("\n"))
        if match:
            head, value, tail, marker = match.groups()
            if marker == "namespace:operator":
                value = operator_namespace
            elif marker == "namespace:cluster":
                value = cluster_namespace
            else:
                value = value.replace(DEFAULT_NAMESPACE + ".", operator_namespace + ".", 1)
            line = head + value + tail + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    return "".join(lines)


def _read(source, version, name):
    if source:
        path = os.path.join(source, name)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            return handle.read()
    url = RELEASE_URL.format(version=version, name=name)
    try:
        return open_url(url, timeout=60).read().decode("utf-8")
    except Exception as exc:
        if name in OPTIONAL and getattr(exc, "code", None) == 404:
            return None
        raise ValidationError("rook_ceph_version", "cannot fetch {0}: {1} (set rook_ceph_manifests_src to a local copy for an "
                                                   "air-gapped fleet)".format(url, exc))


def load(source, version, operator_namespace=DEFAULT_NAMESPACE, cluster_namespace=DEFAULT_NAMESPACE):
    """The objects of the release manifests, in apply order."""
    if source and not os.path.isdir(source):
        raise ValidationError("rook_ceph_manifests_src", "{0} is not a directory".format(source))
    objects = []
    for name in FILES:
        text = _read(source, version, name)
        if text is None:
            if name in OPTIONAL:
                continue
            raise ValidationError("rook_ceph_manifests_src", "{0} has no {1}".format(source, name))
        docs = [doc for doc in yaml.load_all(_rewrite(text, operator_namespace, cluster_namespace), Loader=_LOADER) if doc]
        objects.extend(docs)
    if not any(obj.get("kind") == "Deployment" and (obj.get("metadata") or {}).get("name") == "rook-ceph-operator" for obj in objects):
        raise ValidationError("rook_ceph_manifests_src", "the manifests hold no Deployment rook-ceph-operator")
    return objects


def operator_image(objects):
    for obj in objects:
        if obj.get("kind") == "Deployment" and obj["metadata"].get("name") == "rook-ceph-operator":
            containers = obj["spec"]["template"]["spec"].get("containers") or [{}]
            return containers[0].get("image")
    return None
