"""fleetdr-lab: an emulated Kubernetes fleet for fleetdr.kube."""
