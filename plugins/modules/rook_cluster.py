#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, fleetdr.kube contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rook_cluster
short_description: Create, update or delete a Rook CephCluster and wait until Ceph is healthy
version_added: 1.1.0
author:
  - fleetdr.kube maintainers (@fleetdr)
description:
  - Manages one C(CephCluster) of a Rook-Ceph operator already installed on the cluster (role
    R(fleetdr.kube.rook_ceph,ansible_collections.fleetdr.kube.rook_ceph_role) installs it).
  - Options mirror Kurator's C(DistributedStorage) (O(data_dir_host_path), O(monitor), O(manager),
    O(storage)) and map onto the CephCluster as Kurator does (O(monitor.labels) become Rook's
    C(spec.labels.mon), which label the mon pods; node selection is O(monitor.placement)).
  - Before any write, checks what Rook would only report later or never, naming the option and the
    numbers - mon count 1 to 9 and odd, mgr count 1 to 5, enough Nodes for the mons (and mgrs)
    when O(monitor.allow_multiple_per_node) is false, a placement that no Node satisfies, storage
    node names that are not a Node's C(kubernetes.io/hostname), a changed O(data_dir_host_path),
    reserved data directories.
  - Waits by watch until the CephCluster is C(Ready) for the current generation B(and) Ceph's health
    is one of O(health_ok). A reconcile that Rook reports as failed (phase C(Progressing), state
    C(Error)) fails the task at once with Rook's message.
  - With O(state=absent), refuses (writing nothing) while Rook objects that block the deletion exist
    (pools, filesystems, object stores, users ...) or while Rook-provisioned PersistentVolumes exist,
    unless the cluster allows uninstalling with volumes. O(destroy_data=true) confirms Rook's cleanup
    policy first, so Rook wipes the data directories and disks.
extends_documentation_fragment:
  - fleetdr.kube.k8s_auth
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description: Name of the CephCluster.
    type: str
    default: rook-ceph
  namespace:
    description: Namespace of the CephCluster (Rook allows one per namespace).
    type: str
    default: rook-ceph
  operator_namespace:
    description:
      - Namespace of the Rook operator. Rook's CSI drivers are named after it
        (C(<operator_namespace>.rbd.csi.ceph.com)), which O(state=absent) needs to find the volumes Rook provisioned.
    type: str
    default: rook-ceph
  state:
    description: V(present) creates or updates the CephCluster; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  data_dir_host_path:
    description:
      - Directory on every host where Ceph keeps its monitors' data and its configuration. It cannot be
        changed once the CephCluster exists.
    type: str
    default: /var/lib/rook
  monitor:
    description: The Ceph monitors.
    type: dict
    default: {}
    suboptions:
      count:
        description: Number of monitors, odd, 1 to 9. Defaults to 3.
        type: int
      allow_multiple_per_node:
        description: Allow more than one monitor on a node (test clusters only).
        type: bool
        default: false
      labels:
        description: Labels Rook puts on the monitor Deployments and pods (not a node selector).
        type: dict
      annotations:
        description: Annotations Rook puts on the monitor Deployments and pods.
        type: dict
      placement:
        description:
          - Rook placement of the monitors (C(nodeAffinity), C(tolerations), C(podAntiAffinity),
            C(topologySpreadConstraints)), as in C(spec.placement.mon).
        type: dict
  manager:
    description: The Ceph managers.
    type: dict
    default: {}
    suboptions:
      count:
        description: Number of managers, 1 to 5. Defaults to 2 (one active, one standby).
        type: int
      allow_multiple_per_node:
        description: Allow more than one manager on a node.
        type: bool
        default: false
      labels:
        description: Labels Rook puts on the manager Deployments and pods.
        type: dict
      annotations:
        description: Annotations Rook puts on the manager Deployments and pods.
        type: dict
      placement:
        description: Rook placement of the managers, as in C(spec.placement.mgr).
        type: dict
  storage:
    description: Which nodes and devices become OSDs.
    type: dict
    default: {}
    suboptions:
      use_all_nodes:
        description:
          - Every node is a storage node. Defaults to true unless O(storage.nodes) is given; Rook ignores
            O(storage.nodes) when this is true, so both together are refused.
        type: bool
      use_all_devices:
        description: Consume every empty device of a storage node.
        type: bool
        default: true
      device_filter:
        description: Regular expression of device names to consume (for example V(^sd[b-d])).
        type: str
      nodes:
        description: The storage nodes, by their C(kubernetes.io/hostname) label.
        type: list
        elements: dict
        suboptions:
          name:
            description: The node's C(kubernetes.io/hostname) label value.
            type: str
            required: true
          devices:
            description: Device names on that node.
            type: list
            elements: str
          device_filter:
            description: Regular expression of device names on that node.
            type: str
          use_all_devices:
            description: Consume every empty device of that node.
            type: bool
  ceph_image:
    description: Ceph container image; changing it upgrades Ceph.
    type: str
    default: quay.io/ceph/ceph:v20.2.4
  allow_unsupported:
    description: Let Rook run a Ceph release it does not support.
    type: bool
    default: false
  cleanup_policy:
    description: Rook's C(spec.cleanupPolicy).
    type: dict
    suboptions:
      confirmation:
        description:
          - V(yes-really-destroy-data) makes Rook wipe the hosts when the cluster is deleted, and stops
            all orchestration from then on. Refused on a new cluster.
        type: str
        choices: ['', yes-really-destroy-data]
      sanitize_disks:
        description: How the cleanup wipes OSD disks.
        type: dict
        suboptions:
          method:
            description: V(quick) or V(complete).
            type: str
            choices: [quick, complete]
          data_source:
            description: V(zero) or V(random).
            type: str
            choices: [zero, random]
          iteration:
            description: Passes over each disk.
            type: int
      allow_uninstall_with_volumes:
        description: Let the deletion go ahead while Rook-provisioned volumes exist.
        type: bool
  dashboard:
    description: Enable the Ceph dashboard.
    type: bool
    default: false
  extra_spec:
    description:
      - Further CephCluster C(spec) fields (Rook's names, for example C(network), C(resources),
        C(healthCheck)), merged over what the options above produce.
    type: dict
    default: {}
  health_ok:
    description: Ceph health values that count as usable. V(HEALTH_ERR) never does.
    type: list
    elements: str
    choices: [HEALTH_OK, HEALTH_WARN]
    default: [HEALTH_OK, HEALTH_WARN]
  destroy_data:
    description:
      - With O(state=absent), confirm Rook's cleanup policy before deleting, so Rook wipes the data
        directories and disks. Without it the hosts keep the old data, and a new cluster on them fails.
    type: bool
    default: false
  wait:
    description: Wait until the CephCluster is usable (or gone, with O(state=absent)).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait.
    type: int
    default: 900
notes:
  - The module runs on the controller (C(ansible_connection=local)) and talks to the cluster API.
  - Writes use server-side apply with field manager C(fleetdr); fields other managers own are reported as conflicts.
seealso:
  - module: fleetdr.kube.rook_info
  - name: Rook CephCluster CRD
    description: Every field of the CephCluster spec.
    link: https://rook.io/docs/rook/latest/CRDs/Cluster/ceph-cluster-crd/
"""

EXAMPLES = r"""
- name: A CephCluster with three monitors on nodes labelled for storage
  fleetdr.kube.rook_cluster:
    monitor:
      count: 3
      labels: {team: storage}
      placement:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: role, operator: In, values: [storage]}
    manager:
      count: 2
    storage:
      use_all_devices: true

- name: A one-node test cluster
  fleetdr.kube.rook_cluster:
    monitor: {count: 1}
    manager: {count: 1}
    health_ok: [HEALTH_OK, HEALTH_WARN]

- name: Tear it down and wipe the hosts
  fleetdr.kube.rook_cluster:
    state: absent
    destroy_data: true
"""

RETURN = r"""
result:
  description: The CephCluster's state.
  returned: always
  type: dict
  contains:
    phase:
      description: Rook's phase - V(Progressing), V(Ready) or V(Deleting). A failure is V(Progressing) with state V(Error).
      type: str
      returned: always
    state:
      description: Rook's state - V(Creating), V(Created), V(Error) or V(Deleting).
      type: str
      returned: always
    message: {description: Rook's message., type: str, returned: always}
    health: {description: Ceph health (absent until the first successful reconcile)., type: str, returned: always}
    health_checks: {description: "Failing Ceph health checks: code -> message.", type: dict, returned: always}
    capacity: {description: "Bytes total, used and available.", type: dict, returned: always}
    ceph_version: {description: The running Ceph version., type: str, returned: always}
    fsid: {description: The Ceph cluster's fsid., type: str, returned: always}
cluster:
  description: The CephCluster object.
  returned: when it exists
  type: dict
diff:
  description: Before and after, when run with C(--diff).
  returned: when diff mode is on and something changed
  type: dict
"""

from ansible_collections.fleetdr.kube.plugins.module_utils.apply import changed as any_changed
from ansible_collections.fleetdr.kube.plugins.module_utils.client import auth_argspec
from ansible_collections.fleetdr.kube.plugins.module_utils.common import get_client, kube_module, run_module
from ansible_collections.fleetdr.kube.plugins.module_utils.rook import cluster as clusters, objects, status as statuses


def argspec():
    spec = auth_argspec()
    spec.update(clusters.CLUSTER_ARG_SPEC)
    spec.update(
        operator_namespace={"type": "str", "default": "rook-ceph"},
        destroy_data={"type": "bool", "default": False},
    )
    return spec


def main():
    module = kube_module(argument_spec=argspec(), supports_check_mode=True)

    def action():
        params = module.params
        if params["state"] == "present":
            clusters.validate(params)
        client = get_client(module, namespace=params["namespace"])
        if params["state"] == "absent":
            change, live = objects.remove_cluster(client, params, params["operator_namespace"], params["destroy_data"], module.check_mode)
        else:
            change, live = objects.ensure_cluster(client, params, module.check_mode)
        out = {"changed": any_changed([change]), "result": statuses.summary(live), "action": change["action"]}
        if live is not None:
            out["cluster"] = live
        if module._diff and change.get("diff"):
            out["diff"] = change["diff"]
        return out

    run_module(module, action, name=module.params.get("name"))


if __name__ == "__main__":
    main()
