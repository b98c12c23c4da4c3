"""Build the ansible_collections tree Ansible needs: this repo as fleetdr.kube next to the
kubernetes.core copy that the `ansible` package bundles (Galaxy is unreachable), and awx.awx for
extensions/awx/apply.yml."""
import os
import sys
from pathlib import Path

import ansible_collections  # the namespace package installed by the `ansible` wheel

REPO = Path(__file__).resolve().parent.parent


def bundled(namespace, name):
    for root in ansible_collections.__path__:
        candidate = Path(root) / namespace / name
        if (candidate / "MANIFEST.json").exists() or (candidate / "galaxy.yml").exists():
            return candidate
    sys.exit(f"collection {namespace}.{name} not found in the installed ansible package")


def link(target, link_path):
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() and os.readlink(link_path) == str(target):
        return
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    link_path.symlink_to(target)


def main():
    root = Path(sys.argv[1]) / "ansible_collections"
    link(REPO, root / "fleetdr" / "kube")
    for ns, name in (("kubernetes", "core"), ("ansible", "utils"), ("ansible", "posix"), ("community", "general"), ("awx", "awx")):
        link(bundled(ns, name), root / ns / name)


if __name__ == "__main__":
    main()
