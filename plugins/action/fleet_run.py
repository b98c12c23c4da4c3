# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-side fleet runner (documentation in plugins/modules/fleet_run.py).

One task drives every selected cluster concurrently through module_utils (one thread per
cluster, waits by watch), then builds and writes the report. Per-cluster results come back
keyed by inventory host so the playbook can set each host's facts from them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import difflib
import gc
import os
import re
import tempfile
import threading

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.fleetdr.kube.plugins.module_utils.errors import ValidationError
from ansible_collections.fleetdr.kube.plugins.module_utils.fleet import CLUSTER_HOSTVARS, cluster_from_hostvars, run_and_report, wave_size
from ansible_collections.fleetdr.kube.plugins.module_utils.report import (
    FAIL_ON_CHOICES,
    RENDERERS,
    ReportError,
    build_report,
    exit_decision,
    render_table,
    scrub_secrets,
    stats_data,
    write_report,
)
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import names
from ansible_collections.fleetdr.kube.plugins.plugin_utils.progress import FleetProgress
from ansible_collections.fleetdr.kube.plugins.plugin_utils.role_objects import SECRET_VARS, RoleObjects
from ansible_collections.fleetdr.kube.plugins.module_utils.velero import spec as specs
from ansible_collections.fleetdr.kube.plugins.module_utils.velero.argspec import (
    BACKUP_SPEC_MUTUALLY_EXCLUSIVE,
    backup_spec_argspec,
    restore_spec_argspec,
    restore_transform_argspec,
)

try:
    from ansible_collections.fleetdr.kube.plugins.module_utils.velero.fleet import backup, drill, install, job as jobs, migrate, restore, schedule, status
    from ansible_collections.fleetdr.kube.plugins.module_utils.rook import fleet as rook_fleet, manifests as rook_manifests, vault as rook_vault
    OPERATION_IMPORT_ERROR = None
except ImportError as exc:  # kubernetes / kubernetes.core missing on the controller
    jobs = None
    OPERATION_IMPORT_ERROR = exc

display = Display()

OPERATIONS = ("install", "backup", "restore", "migrate", "schedule", "status", "drill", "storage", "storage_status")
UNNAMED = ("status", "install", "storage", "storage_status")

ARGUMENT_SPEC = dict(
    operation=dict(type="str", required=True, choices=list(OPERATIONS)),
    name=dict(type="str", default=""),
    name_var=dict(type="str", default="name"),
    options=dict(type="dict", default={}),
    option_vars=dict(type="list", elements="str", default=[]),
    hosts=dict(type="list", elements="str"),
    cluster_selector=dict(type="dict", default={}),
    source=dict(type="str"),
    velero_namespace=dict(type="str", default="velero"),
    wait_timeout=dict(type="int", default=600),
    deadline=dict(type="int", default=1800),
    max_workers=dict(type="int"),
    report_dir=dict(type="path", default="fleetdr-reports"),
    report_path=dict(type="path"),
    formats=dict(type="list", elements="str", default=sorted(RENDERERS), choices=sorted(RENDERERS)),
    fail_on=dict(type="str", default="any", choices=list(FAIL_ON_CHOICES)),
    batch=dict(type="str"),
    max_fail_percentage=dict(type="int"),
    progress=dict(type="bool", default=True),
    progress_interval=dict(type="int", default=30),
)

RESTORE_OPTIONS = restore_spec_argspec()
COMMON_OPTIONS = dict(labels=dict(type="dict"), allow_partially_failed=dict(type="bool", default=False),
                      allow_missing_volume_data=dict(type="bool", default=False),
                      ceph_health_gate=dict(type="str", default="warn", choices=["off", "warn", "enforce"]))
MIGRATE_RESTORE_KEYS = ("namespace_mapping", "existing_resource_policy", "restore_pvs", "preserve_node_ports")


def option_specs(operation):
    """(argument spec, mutually exclusive groups) of ``options`` for one operation."""
    spec = dict(COMMON_OPTIONS)
    exclusive = []
    if operation in ("backup", "restore", "migrate", "drill"):
        spec.update(on_timeout=dict(type="str", default="leave", choices=["leave", "cancel"]))
    if operation in ("backup", "schedule", "migrate"):
        spec.update(backup_spec_argspec())
        exclusive.extend(BACKUP_SPEC_MUTUALLY_EXCLUSIVE)
    if operation == "restore":
        spec.update(RESTORE_OPTIONS)
        spec.update(restore_transform_argspec())
        spec.update(backup_name=dict(type="str"), schedule_name=dict(type="str"))
        exclusive.extend([("backup_name", "schedule_name"), ("label_selector", "or_label_selectors")])
    if operation == "migrate":
        spec.update(dict((key, RESTORE_OPTIONS[key]) for key in MIGRATE_RESTORE_KEYS))
        spec.update(storage_class_mapping=dict(type="dict"), image_registry_mapping=dict(type="dict"),
                    keep_source_location=dict(type="bool", default=False))
    if operation == "schedule":
        spec.update(schedule=dict(type="str"), state=dict(type="str", default="present", choices=["present", "absent"]),
                    paused=dict(type="bool", default=False), from_backup=dict(type="str"),
                    skip_immediately=dict(type="bool"))
    if operation == "status":
        spec.update(max_backup_age_s=dict(type="int"))
    if operation == "drill":
        spec.update(backup_name=dict(type="str"), schedule_name=dict(type="str"), included_namespaces=dict(type="list", elements="str"),
                    scratch_suffix=dict(type="str", default="drill"), keep=dict(type="bool", default=False))
        exclusive.append(("backup_name", "schedule_name"))
    if operation == "install":
        spec = dict(state=dict(type="str", default="present", choices=["present", "absent"]),
                    force_conflicts=dict(type="bool", default=False))
    if operation == "storage":
        spec = dict(state=dict(type="str", default="present", choices=["present", "absent"]),
                    force_conflicts=dict(type="bool", default=False), destroy_data=dict(type="bool", default=False),
                    version=dict(type="str", default="v1.20.6"), manifests_src=dict(type="path"))
    if operation == "storage_status":
        spec = {}
    return spec, exclusive


def validate_options(operation, name, raw, source=None):
    """Every input checked before the first API call; returns the params FleetRun carries."""
    spec, exclusive = option_specs(operation)
    validator = ArgumentSpecValidator(spec, mutually_exclusive=exclusive or None)
    checked = validator.validate(dict(raw or {}))
    if checked.error_messages:
        raise ValidationError("options", "; ".join(checked.error_messages))
    params = dict(checked.validated_parameters)
    if operation == "restore" and not name:
        name = specs.default_restore_name(params.get("backup_name") or params.get("schedule_name") or "", params)
    params["run_name"] = name
    if operation not in UNNAMED:
        if not name:
            raise ValidationError("name", "a name is required for a fleet {0}".format(operation))
        names.validate_object_name(name, "name", max_length=names.MAX_NAME)
    params["labels"] = names.validate_labels(params.get("labels"), "labels")
    if operation in ("backup", "migrate") or (operation == "schedule" and params["state"] == "present" and not params.get("from_backup")):
        params["backup_spec"] = specs.build_backup_spec(params)
    if operation == "schedule" and params["state"] == "present":
        if params.get("from_backup") and any(params.get(k) is not None for k in backup_spec_argspec()):
            raise ValidationError("from_backup", "takes the backup's own options; do not combine it with backup options")
        if params.get("from_backup"):
            names.validate_object_name(params["from_backup"], "from_backup")
        params["schedule"] = specs.validate_cron(params.get("schedule"), "schedule")
    if operation in ("restore", "migrate"):
        restore = dict((key, params.get(key)) for key in RESTORE_OPTIONS if key in params)
        specs.build_restore_spec(restore, "placeholder")
        params["restore_options"] = restore
        specs.validate_mapping(params.get("storage_class_mapping"), "storage_class_mapping", "storage class")
        specs.validate_mapping(params.get("image_registry_mapping"), "image_registry_mapping", "image part")
    if operation == "restore":
        if not params.get("backup_name") and not params.get("schedule_name"):
            raise ValidationError("backup_name", "one of backup_name or schedule_name is required")
        source_option = "backup_name" if params.get("backup_name") else "schedule_name"
        names.validate_object_name(params[source_option], source_option)
        params["resource_modifier_rules"] = specs.validate_resource_modifier_rules(params.get("resource_modifier_rules"))
    if operation == "status" and params.get("max_backup_age_s") is not None and params["max_backup_age_s"] < 1:
        raise ValidationError("max_backup_age_s", "must be at least 1, got {0}".format(params["max_backup_age_s"]))
    if operation == "drill":
        for option in ("backup_name", "schedule_name"):
            if params.get(option):
                names.validate_object_name(params[option], option)
        if not re.match(r"^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$", params["scratch_suffix"]):
            raise ValidationError("scratch_suffix", "must be 1-22 lowercase letters, digits or '-' (it ends namespace names), "
                                                    "got '{0}'".format(params["scratch_suffix"]))
        for namespace in params.get("included_namespaces") or []:
            names.validate_object_name(namespace, "included_namespaces", max_length=63)
    if operation == "migrate":
        if not source:
            raise ValidationError("source", "migrate needs the source cluster (an inventory host)")
        params["source"] = source
    return params


# Variables every fleet playbook reads besides its option_vars (the run name, the shared settings).
PLAYBOOK_VARS = ("backup_name", "restore_name", "migrate_name", "drill_name", "schedule_name", "source_cluster", "velero_state",
                 "wait_timeout", "fleet_deadline", "fail_on", "report_dir", "velero_namespace", "progress", "progress_interval",
                 "batch", "max_fail_percentage", "force_conflicts", "fleetdr_cluster_selector", "fleetdr_targets")


def misspelt_variables(given, known):
    """[(typed, meant)] for each of ``given`` that is not one of ``known`` but close to one (a typo
    that would otherwise be ignored and, for a filter, widen what the run touches)."""
    known = sorted(set(known))
    out = []
    for typed in sorted(given):
        if typed in known:
            continue
        close = difflib.get_close_matches(typed, known, n=1, cutoff=0.85)
        if close:
            out.append((typed, close[0]))
    return out


def probe_report_dir(path, option):
    """Fail (ValidationError naming ``option``) before any cluster is touched unless a report can be
    written there: the missing directories are created, a file written, and all of it removed again
    (the run itself writes the report at its end)."""
    path = os.path.abspath(path)
    created = []
    try:
        missing = path
        while not os.path.exists(missing):
            created.append(missing)
            missing = os.path.dirname(missing)
        for directory in reversed(created):
            os.mkdir(directory)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ValidationError(option, "reports cannot be written under {0}: {1}".format(path, exc.strerror or exc))
    finally:
        for directory in created:
            try:
                os.rmdir(directory)
            except OSError:
                pass


def selector_matches(selector, labels):
    return all(str(labels.get(str(key))) == str(value) for key, value in (selector or {}).items())


def default_report_dir(base, operation, name):
    """<base>/<operation>-<name>-<UTC timestamp>, with -2, -3 ... when taken (slices of one AWX job
    may finish in the same second on one controller)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    label = "-".join(part for part in (operation, name) if part)
    path = os.path.join(base, "{0}-{1}".format(label, stamp))
    candidate, number = path, 1
    while os.path.exists(candidate):
        number += 1
        candidate = "{0}-{1}".format(path, number)
    return candidate


GC_FIRST_GENERATION_THRESHOLD = 20000


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def _clusters(self, args, task_vars):
        """(selected clusters, secret values, {host: its variables}): each hostvars[host] merges the
        host's variables anew, so the role rendering reuses these."""
        hostvars = task_vars.get("hostvars") or {}
        views = {}
        hosts = args["hosts"] if args["hosts"] is not None else list(task_vars.get("ansible_play_hosts") or [])
        clusters, secrets = [], []
        for host in hosts:
            if host not in hostvars:
                raise ValidationError("hosts", "'{0}' is not an inventory host".format(host))
            hv = views[host] = hostvars[host]
            values = dict((key, hv.get(key)) for key in CLUSTER_HOSTVARS)
            cluster = cluster_from_hostvars(host, values)
            if not selector_matches(args["cluster_selector"], cluster["labels"]):
                continue
            for var, key, what in (("fleetdr_storage_class_map", "storage_class_map", "storage class"),
                                   ("fleetdr_image_registry_map", "image_registry_map", "image part")):
                if values.get(var):
                    specs.validate_mapping(values[var], "{0} of {1}".format(var, host), what)
                cluster[key] = values.get(var) or {}
            if values.get("fleetdr_api_key"):
                secrets.append(str(values["fleetdr_api_key"]))
            clusters.append(cluster)
        return clusters, secrets, views

    def _inventory_resolver(self, task_vars, job):
        """name -> cluster entry of any inventory host (None when there is none), for the cluster threads
        that need a cluster outside the selection (a backup vault). Host variables are templated under
        one lock, while the main thread only waits for the fleet run."""
        hostvars = task_vars.get("hostvars") or {}
        lock = threading.Lock()

        def resolve(name):
            with lock:
                if name not in hostvars:
                    return None
                values = dict((key, hostvars[name].get(key)) for key in CLUSTER_HOSTVARS)
            if values.get("fleetdr_api_key"):
                with job.lock:
                    job.secret_values.add(str(values["fleetdr_api_key"]))
            return cluster_from_hostvars(name, values)
        return resolve

    def _options_from_vars(self, option_vars, task_vars):
        """Options given as play variables (extra vars, AWX survey answers); unset or empty ones are left out."""
        options = {}
        for key in option_vars:
            if key in task_vars:
                value = self._templar.template(task_vars[key])
                if value not in (None, ""):
                    options[key] = value
        return options

    def _render_role(self, clusters, views, task_vars, params, secrets):
        """Each cluster's objects from role fleetdr.kube.velero's templates and the host's variables; with
        ``velero_vault`` set, the vault's cluster entry (its bucket and keys are fetched per cluster at run time)."""
        hostvars = task_vars.get("hostvars") or {}
        vault = rook_vault.vault_params(self._templar.template(task_vars.get("velero_vault")))
        if vault is not None and params["state"] == "present":
            if vault["cluster"] not in hostvars:
                raise ValidationError("velero_vault", "cluster '{0}' is not an inventory host".format(vault["cluster"]))
            values = dict((key, hostvars[vault["cluster"]].get(key)) for key in CLUSTER_HOSTVARS)
            params["vault"] = dict(vault, target=cluster_from_hostvars(vault["cluster"], values))
        rendered = RoleObjects(self._templar).render_all([c["name"] for c in clusters], views, params["state"],
                                                         target_elsewhere="vault" in params)
        for cluster in clusters:
            settings, cluster["objects"], cluster["switched_off"] = rendered[cluster["name"]]
            secrets.extend(str(settings[name]) for name in SECRET_VARS if settings.get(name))

    def _rook_clusters(self, clusters, task_vars, params):
        """Each cluster's CephCluster options from its rook_ceph_* variables (all checked before any
        cluster is touched) and, to install, Rook's release manifests read once per namespace pair."""
        hostvars = task_vars.get("hostvars") or {}
        loaded = {}
        for cluster in clusters:
            values = dict((var, self._templar.template(hostvars[cluster["name"]].get(var))) for var in rook_fleet.HOST_VARS)
            cluster["rook"] = rook_fleet.cluster_params(cluster["name"], values)
            if "version" in params:
                key = (cluster["rook"]["operator_namespace"], cluster["rook"]["namespace"])
                if key not in loaded:
                    loaded[key] = rook_manifests.load(params.get("manifests_src"), params["version"], *key)
                cluster["rook_manifests"] = loaded[key]

    def run(self, tmp=None, task_vars=None):
        # Ansible forks a worker for this one task. What the worker inherited (the play, the inventory,
        # every host's variables) outlives the task: it is frozen out of the cyclic collector, which
        # otherwise walked it again on each full collection (a sixth of the worker's CPU on a
        # 300-cluster install), and the fan-out's many short-lived objects trigger collections less
        # often.
        threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(max(threshold[0], GC_FIRST_GENERATION_THRESHOLD), *threshold[1:])
        try:
            return self._run(tmp, task_vars)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()

    def _run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation
        if jobs is None:
            raise AnsibleActionFail("fleetdr.kube.fleet_run needs the kubernetes Python library and the kubernetes.core "
                                    "collection on the controller: {0}".format(to_native(OPERATION_IMPORT_ERROR)))
        operation, name = args["operation"], args["name"]
        # -e variables are the user's words for the playbook's options: a near miss is refused, not ignored.
        extra_vars = getattr(getattr(self._task, "_variable_manager", None), "extra_vars", None) or {}
        typos = misspelt_variables(extra_vars, list(args["option_vars"]) + list(PLAYBOOK_VARS))
        if typos:
            raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format("; ".join(
                "variable '{0}' is not an option of this playbook; did you mean '{1}'?".format(typed, meant) for typed, meant in typos)),
                result=dict(option=typos[0][0]))
        for option, value, low in (("wait_timeout", args["wait_timeout"], 1), ("fleet_deadline", args["deadline"], 1),
                                   ("progress_interval", args["progress_interval"], 0), ("max_workers", args["max_workers"], 1)):
            if value is not None and value < low:
                raise AnsibleActionFail("Invalid input, nothing was changed: {0} must be at least {1}, got {2}".format(option, low, value),
                                        result=dict(option=option))
        try:
            wave_size(args["batch"], 1)  # its form does not depend on the fleet's size
        except ValueError as exc:
            raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format(to_native(exc)), result=dict(option="batch"))
        if args["max_fail_percentage"] is not None and not 0 <= args["max_fail_percentage"] <= 100:
            raise AnsibleActionFail("Invalid input, nothing was changed: max_fail_percentage must be between 0 and 100, got {0}".format(
                args["max_fail_percentage"]), result=dict(option="max_fail_percentage"))
        options = self._options_from_vars(args["option_vars"], task_vars or {})
        options.update(args["options"])
        try:
            params = validate_options(operation, name, options, args["source"])
            name = params.pop("run_name")
            clusters, secrets, views = self._clusters(args, task_vars or {})
            probe_report_dir(args["report_path"] or args["report_dir"], "report_path" if args["report_path"] else "report_dir")
        except ValidationError as exc:
            option, message = exc.option, to_native(exc.msg)
            if option == "name" and args["name_var"] != "name":  # the user typed the playbook's variable, not ours
                option, message = args["name_var"], args["name_var"] + message[len("name"):]
            raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format(message), result=dict(option=option))
        if not clusters:
            # An empty selection is the user's mistake to see, not a quiet success: a failed run with a report saying why.
            why = "no cluster selected (hosts {0}, cluster_selector {1})".format(
                args["hosts"] or "of the play", args["cluster_selector"] or "none")
            paths = {}
            if not self._task.check_mode:
                report = build_report(operation, name, [], options={"selection": why})
                paths = write_report(report, os.path.abspath(args["report_path"] or default_report_dir(args["report_dir"], operation, name)),
                                     args["formats"])
            raise AnsibleActionFail(why, result=dict(paths=paths, option="cluster_selector"))

        if operation == "install":
            try:
                self._render_role(clusters, views, task_vars or {}, params, secrets)
            except ValidationError as exc:
                raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format(to_native(exc.msg)), result=dict(option=exc.option))
            except ValueError as exc:
                raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format(to_native(exc)))
        if operation in ("storage", "storage_status"):
            try:
                self._rook_clusters(clusters, task_vars or {}, params)
            except ValidationError as exc:
                raise AnsibleActionFail("Invalid input, nothing was changed: {0}".format(to_native(exc.msg)), result=dict(option=exc.option))
        job = jobs.FleetJob(operation, name, params, args["velero_namespace"], args["wait_timeout"], self._task.check_mode)
        job.resolve_cluster = self._inventory_resolver(task_vars or {}, job)
        if operation == "migrate":
            cluster_names = [c["name"] for c in clusters]
            if args["source"] not in cluster_names:
                raise AnsibleActionFail("Invalid input, nothing was changed: source_cluster '{0}' is not among the selected "
                                        "clusters ({1})".format(args["source"], ", ".join(cluster_names)), result=dict(option="source"))
            targets = [n for n in cluster_names if n != args["source"]]
            if not targets:
                raise AnsibleActionFail("Invalid input, nothing was changed: migrate needs at least one target besides "
                                        "the source", result=dict(option="source"))
            operation_fn = migrate.operation(job, args["source"], targets)
        else:
            operation_fn = {"install": install.operation, "backup": backup.operation, "restore": restore.operation, "drill": drill.operation,
                            "schedule": schedule.operation, "status": status.operation,
                            "storage": lambda job: rook_fleet.storage(job, jobs.timeout_for),
                            "storage_status": rook_fleet.storage_status}[operation](job)

        report_options = dict((k, v) for k, v in params.items() if k not in ("backup_spec", "restore_options"))
        if operation == "migrate":
            report_options["targets"] = [c["name"] for c in clusters if c["name"] != args["source"]]
        job.secret_values.update(secrets)  # the report masks these and every credential read during the run
        progress = None
        if args["progress"]:
            progress = FleetProgress(" ".join(part for part in (operation, name) if part), [c["name"] for c in clusters],
                                     lambda line: display.display(scrub_secrets(line, job.secret_values)),
                                     interval=args["progress_interval"]).start()
        try:
            try:
                report = run_and_report(operation, name, clusters, jobs.with_final_phase(operation_fn, job), options=report_options,
                                        deadline_s=args["deadline"], max_workers=args["max_workers"], secret_values=job.secret_values,
                                        batch=args["batch"], max_fail_percentage=args["max_fail_percentage"],
                                        on_result=progress and progress.on_result, on_phase=progress and progress.on_phase)
            finally:
                if progress is not None:
                    progress.stop()
            fail, summary = exit_decision(report, args["fail_on"])
            paths = {}
            directory = args["report_path"] or default_report_dir(args["report_dir"], operation, name)
            if not self._task.check_mode:
                paths = write_report(report, os.path.abspath(directory), args["formats"])
        except (ReportError, OSError, ValueError) as exc:
            raise AnsibleActionFail("Failed to build or write the fleet report: {0}".format(to_native(exc)))

        table = render_table(report)
        display.display(table)
        # What the play decides on, per host; the whole report (about 2 KB per cluster) stays in its files:
        # ansible-playbook copies and walks a task's result several times, 2 MB of it at 1,000 clusters.
        by_host = dict((entry["name"], dict(((key, entry[key]) for key in ("verdict", "phase", "reason")),
                                            changed=bool(job.changed.get(entry["name"])))) for entry in report["clusters"])
        if self._task.diff and job.diffs:
            result["diff"] = [diff for cluster in sorted(job.diffs) for diff in job.diffs[cluster]]
        result.update(
            changed=any(job.changed.values()),
            clusters=by_host,
            paths=paths,
            report_dir=os.path.abspath(directory) if paths else None,
            table=table,
            stats=dict(stats_data(report), report_dir=os.path.abspath(directory) if paths else None),
            fail=fail,
            msg=summary,
            failed_clusters=[c["name"] for c in report["clusters"] if c["verdict"] in ("failed", "partially_failed")],
        )
        return result
