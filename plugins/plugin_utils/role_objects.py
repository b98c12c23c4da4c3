# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The objects role fleetdr.kube.velero applies to one cluster, rendered on the controller.

The fleet install path renders the role's own templates (``roles/velero/templates``) with each
cluster's variables: the role's defaults and internal vars, overridden by the host's inventory
and extra variables. The role's per-host path renders the same templates through
kubernetes.core.k8s, so the two cannot drift.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.template import trust_as_template

ROLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles", "velero")
# In the order the role applies them.
TEMPLATES = ("namespace-rbac.yml.j2", "credentials.yml.j2", "locations.yml.j2", "server.yml.j2")
SECRET_VARS = ("velero_s3_access_key_id", "velero_s3_secret_access_key")


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((k, _trusted(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def _load_yaml(path):
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


class RoleObjects(object):
    """Renders the role for many hosts; files are read once."""

    def __init__(self, templar, role_path=ROLE_PATH):
        self.templar = templar
        self.role_path = role_path
        self.defaults = _trusted(_load_yaml(os.path.join(role_path, "defaults", "main.yml")))
        self.internal = _trusted(_load_yaml(os.path.join(role_path, "vars", "main.yml")))
        self.templates = []
        for name in TEMPLATES:
            with open(os.path.join(role_path, "templates", name)) as handle:
                self.templates.append((name, trust_as_template(handle.read())))
        self._crds = {}
        # The role's argument spec types each variable; values from the inventory or -e (strings
        # such as "false") are converted and checked the way the role's own validation does.
        options = _load_yaml(os.path.join(role_path, "meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]
        self.spec = dict((name, dict((k, v) for k, v in option.items() if k in ("type", "elements", "choices", "no_log")))
                         for name, option in options.items())

    def _templar_for(self, host, hostvars):
        available = dict(self.defaults)
        host_values = hostvars.get(host) or {}
        given = {}
        for key in host_values:
            if key in self.spec:
                given[key] = self.templar.template(host_values[key])
            elif key.startswith(("velero_", "fleetdr_")):
                available[key] = host_values[key]
        checked = ArgumentSpecValidator(dict((k, self.spec[k]) for k in given)).validate(given)
        if checked.error_messages:
            raise ValueError("host {0}: {1}".format(host, "; ".join(checked.error_messages)))
        available.update(checked.validated_parameters)
        available.update(self.internal)
        available.update(inventory_hostname=host, role_path=self.role_path)
        return self.templar.copy_with_new_env(available_variables=available)

    def render(self, host, hostvars, state="present"):
        """(settings, objects, switched_off) for one host: the variables the result needs, the
        objects to apply (CRDs first) and the optional objects that are switched off."""
        templar = self._templar_for(host, hostvars)

        def value(name):
            return templar.template(trust_as_template("{{ %s }}" % name))

        settings = dict((name, value(name)) for name in (
            "velero_namespace", "velero_version", "velero_node_agent", "velero_snapshot_location",
            "velero_remove_crds", "velero_s3_bucket", "velero_s3_access_key_id", "velero_s3_secret_access_key",
            "velero_crds_src", "velero_wait_timeout", "velero_install_method"))
        missing = [name for name in ("velero_s3_bucket", "velero_s3_access_key_id", "velero_s3_secret_access_key")
                   if state == "present" and not settings[name]]
        if missing:
            raise ValueError("{0} required to install Velero on {1}".format(", ".join(missing), host))
        objects = list(self._crd_objects(settings["velero_crds_src"])) if state == "present" or settings["velero_remove_crds"] else []
        for name, text in self.templates:
            rendered = templar.template(text)
            objects.extend(doc for doc in yaml.safe_load_all(rendered) if doc)
        namespace = settings["velero_namespace"]
        switched_off = []
        if not settings["velero_node_agent"]:
            switched_off.append({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": namespace}})
        if not settings["velero_snapshot_location"]:
            switched_off.append({"apiVersion": "velero.io/v1", "kind": "VolumeSnapshotLocation",
                                 "metadata": {"name": value("__velero_vsl_name"), "namespace": namespace}})
        return settings, objects, switched_off

    def _crd_objects(self, source):
        if source not in self._crds:
            names = sorted(n for n in os.listdir(source) if n.endswith((".yaml", ".yml")))
            if not names:
                raise ValueError("No CRD files (*.yaml, *.yml) found in velero_crds_src={0}".format(source))
            self._crds[source] = [_load_yaml(os.path.join(source, n)) for n in names]
        return self._crds[source]
