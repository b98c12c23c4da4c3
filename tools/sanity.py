"""Run `ansible-test sanity` on the collection without Docker and without ignore files.

ansible-test wants the collection at .../ansible_collections/fleetdr/kube with its dependencies
beside it, and bootstraps its per-test venvs with a get-pip script downloaded from a host our
machines cannot reach. So: copy the collection's files (what `git ls-files` knows, minus the lab,
which is not part of the collection) into .build/sanity, place kubernetes.core beside it, install
a get-pip stand-in that uses ensurepip, and run the tests in managed venvs.
"""
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_COLLECTION = ("lab/", "tools/", ".ci/", "tests/lab/")

GET_PIP_STANDIN = '''"""Stand-in for get-pip.py: bootstrap pip from the ensurepip wheel, then install as asked."""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True)
subprocess.run([sys.executable, "-m", "pip", "install"] + args, check=True)
'''


def collection_files():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and not f.startswith(NOT_COLLECTION) and (REPO / f).is_file()]


def main():
    # Outside the repo (inside it, git marks the copy as ignored and ansible-test skips it), and
    # private to this run so parallel runs cannot delete each other's tree.
    workdir = Path(tempfile.mkdtemp(prefix="fleetdr-sanity-"))
    try:
        return run(workdir / "ansible_collections")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(tree):
    dest = tree / "fleetdr" / "kube"
    for rel in collection_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    kcore = REPO / ".build" / "collections" / "ansible_collections" / "kubernetes" / "core"
    shutil.copytree(kcore.resolve(), tree / "kubernetes" / "core", symlinks=False)

    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in ("24_2", "25_0", "25_1"):
        (cache / f"get_pip_{version}.py").write_text(GET_PIP_STANDIN)

    env = dict(os.environ)
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    cmd = [str(REPO / ".venv" / "bin" / "ansible-test"), "sanity", "--venv", "--python",
           f"{sys.version_info.major}.{sys.version_info.minor}", "--color", "no"] + sys.argv[1:]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(proc.stdout, flush=True)
    if "All targets skipped" in proc.stdout or "Running sanity test" not in proc.stdout:
        print("sanity: no test ran; that is a failure, not a pass", file=sys.stderr)
        return 1
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
