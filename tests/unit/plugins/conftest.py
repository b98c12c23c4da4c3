"""Make ``ansible_collections.fleetdr.kube`` importable from the repo checkout.

``make collections`` builds .build/collections/ansible_collections/fleetdr/kube -> repo root;
if it is missing, a private copy of that link is made in a temp dir.
"""
import os
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _collections_root():
    built = os.path.join(REPO, ".build", "collections")
    if os.path.exists(os.path.join(built, "ansible_collections", "fleetdr", "kube", "plugins")):
        return built
    root = tempfile.mkdtemp(prefix="fleetdr-collections-")
    os.makedirs(os.path.join(root, "ansible_collections", "fleetdr"))
    os.symlink(REPO, os.path.join(root, "ansible_collections", "fleetdr", "kube"))
    return root


root = _collections_root()
if root not in sys.path:
    sys.path.insert(0, root)

# Shared fakes (tests/unit/plugins/module_utils/fakes.py) import as ``fakes``.
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "module_utils")
if HERE not in sys.path:
    sys.path.insert(0, HERE)
