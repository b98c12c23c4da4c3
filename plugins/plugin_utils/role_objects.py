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

import copy
import json
import os
import pickle

import jinja2
import yaml
from jinja2 import meta

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 templates every string it is given
    def trust_as_template(value):
        return value

ROLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles", "velero")
# In the order the role applies them.
TEMPLATES = ("namespace-rbac.yml.j2", "credentials.yml.j2", "locations.yml.j2", "server.yml.j2")
SECRET_VARS = ("velero_s3_access_key_id", "velero_s3_secret_access_key")
# The role variables the fleet path itself reads.
SETTINGS = ("velero_namespace", "velero_version", "velero_node_agent", "velero_snapshot_location", "velero_remove_crds",
            "velero_s3_bucket", "velero_s3_access_key_id", "velero_s3_secret_access_key", "velero_crds_src",
            "velero_wait_timeout", "velero_install_method", "__velero_vsl_name")


class _AnyName(dict):
    """A filter/test table that claims every name (for reading a template's variables only)."""

    def __contains__(self, name):
        return True

    def get(self, name, default=None):
        return dict.get(self, name) or _no_op


def _no_op(value, *args, **kwargs):
    return value


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((k, _trusted(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


# libyaml when present: the CRDs alone are ~0.5 s of pure-Python parsing.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(path):
    with open(path) as handle:
        return yaml.load(handle, Loader=_LOADER) or {}


def _as_key(value):
    return json.dumps(value, sort_keys=True, default=str)


def _memoise_compiles(environment):
    """Compile each template text once in ``environment``: Ansible compiles every string it templates
    on every call, so each host recompiled the same expression and the role defaults that depend on
    inventory_hostname (about 0.8 ms each, most of rendering a host). A compiled Jinja template
    holds no variables: the same one renders every host. The environment is the templar engine's
    own (Templar.environment is deprecated); without one, templates compile as before."""
    if environment is None:
        return
    compile_text = environment.from_string
    compiled = {}

    def from_string(source, globals=None, template_class=None):  # pylint: disable=redefined-builtin
        if globals is not None or template_class is not None:
            return compile_text(source, globals, template_class)
        key = str(source)
        if key not in compiled:
            compiled[key] = compile_text(source)
        return compiled[key]
    environment.from_string = from_string


class RoleObjects(object):
    """Renders the role for many hosts; files are read once."""

    def __init__(self, templar, role_path=ROLE_PATH):
        # One templar for every host, its variables swapped per host: a copy per host is a new
        # Jinja environment, and templates included from its search path are compiled once per
        # environment (compiling them was most of rendering a host).
        self.templar = templar
        self.host_templar = templar.copy_with_new_env(searchpath=[os.path.join(role_path, "templates")])
        _memoise_compiles(getattr(getattr(self.host_templar, "_engine", None), "environment", None))
        self.role_path = role_path
        self.defaults = _trusted(_load_yaml(os.path.join(role_path, "defaults", "main.yml")))
        self.internal = _trusted(_load_yaml(os.path.join(role_path, "vars", "main.yml")))
        self.templates = []
        environment = jinja2.Environment()
        environment.filters = _AnyName(environment.filters)  # Ansible's filters need not be known to list variables
        environment.tests = _AnyName(environment.tests)
        for name in TEMPLATES:
            with open(os.path.join(role_path, "templates", name)) as handle:
                text = handle.read()
            # The variables the template reads: its output is reused for every host where they resolve alike.
            inputs = sorted(meta.find_undeclared_variables(environment.parse(text)))
            self.templates.append((name, trust_as_template("{%% include %s %%}" % json.dumps(name)), inputs))
        self._rendered = {}
        self._crds = {}
        self._checked = {}  # the host's role values as JSON -> (errors, values as the argument spec types them)
        # The role's argument spec types each variable; values from the inventory or -e (strings
        # such as "false") are converted and checked the way the role's own validation does.
        options = _load_yaml(os.path.join(role_path, "meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]
        self.spec = dict((name, dict((k, v) for k, v in option.items() if k in ("type", "elements", "choices", "no_log")))
                         for name, option in options.items())

    def _host_inputs(self, host, hostvars):
        """The role variables the host sets (inventory, -e), typed by the role's argument spec."""
        host_values = hostvars.get(host) or {}
        given, other = {}, {}
        for key in host_values:
            if key in self.spec:
                given[key] = self.templar.template(host_values[key])
            elif key.startswith(("velero_", "fleetdr_")):
                other[key] = host_values[key]
        # Most hosts give the same values (-e, group vars): each distinct set is checked once.
        key = _as_key(given)
        if key not in self._checked:
            checked = ArgumentSpecValidator(dict((k, self.spec[k]) for k in given)).validate(given)
            self._checked[key] = (checked.error_messages, checked.validated_parameters)
        error_messages, validated = self._checked[key]
        if error_messages:
            raise ValueError("host {0}: {1}".format(host, "; ".join(error_messages)))
        other.update(copy.deepcopy(validated))
        return other

    def _templar_for(self, host, inputs, resolved):
        available = dict(self.defaults)
        available.update(inputs)
        available.update(self.internal)
        available.update(resolved)
        available.update(inventory_hostname=host, role_path=self.role_path)
        self.host_templar.available_variables = available
        return self.host_templar, set(available)

    def _dependencies(self):
        """name -> the variables its default (or internal) value reads."""
        environment = jinja2.Environment()
        environment.filters = _AnyName(environment.filters)
        environment.tests = _AnyName(environment.tests)
        out = {}
        for name, value in list(self.defaults.items()) + list(self.internal.items()):
            texts, names = [value], set()
            while texts:
                item = texts.pop()
                if isinstance(item, dict):
                    texts.extend(item.values())
                elif isinstance(item, list):
                    texts.extend(item)
                elif isinstance(item, str) and ("{{" in item or "{%" in item):
                    names |= meta.find_undeclared_variables(environment.parse(item))
            out[name] = names
        return out

    def render_all(self, hosts, hostvars, state="present", target_elsewhere=False):
        """{host: (settings, objects, switched_off)}.

        Defaults whose value does not depend on anything that differs between the hosts (most of
        them: -e values are the same for every host) are resolved once for the fleet; each host
        then templates only what is its own (e.g. the location prefix from inventory_hostname).
        """
        inputs = dict((host, self._host_inputs(host, hostvars)) for host in hosts)
        keys = set(k for values in inputs.values() for k in values)
        first = inputs[hosts[0]] if hosts else {}
        varying = set(["inventory_hostname"]) | set(
            k for k in keys if any(k not in values or values[k] != first.get(k) for values in inputs.values()))
        dependencies = self._dependencies()
        memo = {}

        def host_specific(name, seen=()):
            if name in varying:
                return True
            if name not in memo:
                memo[name] = name not in seen and any(host_specific(dep, seen + (name,)) for dep in dependencies.get(name, ()))
            return memo[name]

        wanted = set(SETTINGS) | set(var for _name, _text, template_inputs in self.templates for var in template_inputs)
        shared = sorted(name for name in wanted if name in dependencies and not host_specific(name))
        resolved = {}
        if hosts and shared:
            templar, _known = self._templar_for(hosts[0], first, {})
            resolved = templar.template(trust_as_template("{{ {%s} }}" % ", ".join("%r: %s" % (n, n) for n in shared)))
        # Each shared value as it keys the rendered templates: serialised once, not once per host.
        resolved_keys = dict((name, _as_key(value)) for name, value in resolved.items())
        return dict((host, self.render(host, inputs[host], resolved, resolved_keys, state, target_elsewhere)) for host in hosts)

    def render(self, host, inputs, resolved, resolved_keys, state="present", target_elsewhere=False):
        """(settings, objects, switched_off) for one host: the variables the result needs, the
        objects to apply (CRDs first) and the optional objects that are switched off.
        ``resolved``: the fleet-wide values, ``resolved_keys`` each of them serialised (see render_all).
        ``target_elsewhere``: the bucket and keys come from elsewhere (a vault), not from the variables."""
        templar, known = self._templar_for(host, inputs, resolved)
        # One templating call resolves every variable the result and the templates read (each call
        # compiles its expression and the lazy defaults it touches: one call per host, not one per name).
        wanted = sorted((set(SETTINGS) | set(var for _name, _text, template_inputs in self.templates for var in template_inputs
                                             if var in known)) - set(resolved))
        values = dict(resolved)
        if wanted:
            values.update(templar.template(trust_as_template("{{ {%s} }}" % ", ".join("%r: %s" % (name, name) for name in wanted))))
        settings = dict((name, values[name]) for name in SETTINGS)
        missing = [name for name in ("velero_s3_bucket", "velero_s3_access_key_id", "velero_s3_secret_access_key")
                   if state == "present" and not target_elsewhere and not settings[name]]
        if missing:
            raise ValueError("{0} required to install Velero on {1}".format(", ".join(missing), host))
        objects = list(self._crd_objects(settings["velero_crds_src"])) if state == "present" or settings["velero_remove_crds"] else []
        # The templates read the values just resolved, not the defaults' expressions again (rendering
        # those anew inside each template was most of a host's rendering).
        templar.available_variables = dict(values, inventory_hostname=host, role_path=self.role_path)
        for name, text, inputs in self.templates:
            key = (name,) + tuple(resolved_keys[var] if var in resolved_keys else _as_key(values.get(var)) for var in inputs)
            if key not in self._rendered:
                # Kept pickled: each host gets objects of its own (the apply engine and the vault
                # change them), and unpickling is about 6 times cheaper than copy.deepcopy.
                self._rendered[key] = pickle.dumps([doc for doc in yaml.load_all(templar.template(text), Loader=_LOADER) if doc],
                                                   pickle.HIGHEST_PROTOCOL)
            objects.extend(pickle.loads(self._rendered[key]))
        namespace = settings["velero_namespace"]
        switched_off = []
        if not settings["velero_node_agent"]:
            switched_off.append({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": namespace}})
        if not settings["velero_snapshot_location"]:
            switched_off.append({"apiVersion": "velero.io/v1", "kind": "VolumeSnapshotLocation",
                                 "metadata": {"name": settings["__velero_vsl_name"], "namespace": namespace}})
        return settings, objects, switched_off

    def _crd_objects(self, source):
        if source not in self._crds:
            names = sorted(n for n in os.listdir(source) if n.endswith((".yaml", ".yml")))
            if not names:
                raise ValueError("No CRD files (*.yaml, *.yml) found in velero_crds_src={0}".format(source))
            self._crds[source] = [_load_yaml(os.path.join(source, n)) for n in names]
        return self._crds[source]
