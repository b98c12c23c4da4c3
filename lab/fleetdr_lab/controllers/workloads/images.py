"""The lab's image catalogue: which images the emulated kubelet can pull.

Images of the well-known public registries pull (Docker Hub including short names such as busybox or
velero/velero, registry.k8s.io, quay.io, ghcr.io, gcr.io, public.ecr.aws, ...); an image of any other
registry cannot be pulled (the registry does not resolve). `fleetdr-lab image deny|allow PATTERN
[--cluster C]` adds rules, lab-wide or for one cluster: a cluster's rules are asked first, then the
lab-wide ones, then the built-in catalogue; at each level the newest matching rule wins.

A PATTERN is a registry (``quay.io``, ``registry.example.com:5000``, or any name ending in ``/``), a
repository (``busybox``, ``velero/velero``, ``docker.io/rook/*``: any tag), or one image with its tag
or digest (``busybox:1.36``). Names are normalised as the container runtime does (``busybox`` is
``docker.io/library/busybox``); ``*`` globs.

The rules live in this module (`POLICY`), one copy per serving process: the control route that sets
them is lab-wide, so every process holds every rule (per-cluster ones included).
"""
from __future__ import annotations

import fnmatch
import re

from .podspec import normalize_image

# registries the built-in catalogue pulls from (hosts; "*." matches sub-domains)
PUBLIC_REGISTRIES = ("docker.io", "registry-1.docker.io", "index.docker.io", "registry.k8s.io", "k8s.gcr.io",
                     "quay.io", "ghcr.io", "gcr.io", "*.gcr.io", "*.pkg.dev", "public.ecr.aws", "mcr.microsoft.com",
                     "registry.gitlab.com", "nvcr.io", "docker.elastic.co", "registry.access.redhat.com",
                     "registry.redhat.io", "cgr.dev")

# github.com/distribution/reference: a reference is lower-case path components, an optional
# host[:port] first and an optional :tag / @digest
_REFERENCE = re.compile(
    r"^(?:(?P<host>(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$")


def valid_reference(image: str) -> bool:
    return bool(image) and bool(_REFERENCE.match(image))


def registry_of(image: str) -> str:
    return normalize_image(image).split("/", 1)[0]


def repository_of(image: str) -> str:
    """docker.io/library/busybox for busybox:1.36 (no tag or digest)."""
    name = normalize_image(image).split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}"


def _is_registry_pattern(pattern: str) -> bool:
    if pattern.endswith("/"):
        return True
    if "/" in pattern:
        return False
    host = pattern.split(":", 1)[0]
    return "." in host or host == "localhost"


def _matches(pattern: str, image: str) -> bool:
    pattern = pattern.strip()
    if _is_registry_pattern(pattern):
        return fnmatch.fnmatchcase(registry_of(image), pattern.rstrip("/"))
    last = pattern.rsplit("/", 1)[-1]
    if "@" in pattern or ":" in last:  # one image: tag or digest given
        return fnmatch.fnmatchcase(normalize_image(image), normalize_image(pattern))
    return fnmatch.fnmatchcase(repository_of(image), repository_of(pattern))


class ImagePolicy:
    """Lab-wide and per-cluster allow/deny rules over the built-in catalogue."""

    def __init__(self):
        self.lab_rules: list[tuple[str, str]] = []                 # (pattern, "allow"|"deny")
        self.cluster_rules: dict[str, list[tuple[str, str]]] = {}

    def set_rule(self, verdict: str, pattern: str, cluster: str | None = None) -> None:
        if verdict not in ("allow", "deny"):
            raise ValueError(f"unknown verdict {verdict!r}")
        pattern = (pattern or "").strip()
        if not pattern:
            raise ValueError("an image, repository or registry is needed")
        rules = self.cluster_rules.setdefault(cluster, []) if cluster else self.lab_rules
        rules[:] = [r for r in rules if r[0] != pattern] + [(pattern, verdict)]

    def rules(self) -> dict:
        return {"lab": [{"pattern": p, "verdict": v} for p, v in self.lab_rules],
                "clusters": {c: [{"pattern": p, "verdict": v} for p, v in rules]
                             for c, rules in sorted(self.cluster_rules.items()) if rules}}

    def verdict(self, image: str, cluster: str | None = None) -> tuple[bool, str]:
        """(pullable, why not): why is "registry" (it does not resolve) or "image" (not found)."""
        for rules in (self.cluster_rules.get(cluster) or [], self.lab_rules):
            for pattern, verdict in reversed(rules):
                if _matches(pattern, image):
                    if verdict == "allow":
                        return True, ""
                    return False, "registry" if _is_registry_pattern(pattern) else "image"
        if any(fnmatch.fnmatchcase(registry_of(image), r) for r in PUBLIC_REGISTRIES):
            return True, ""
        return False, "registry"


POLICY = ImagePolicy()


def pull_error(image: str, why: str) -> str:
    """containerd's error as the kubelet puts it into the ErrImagePull message
    (pkg/kubelet/images/image_manager.go: the pull error's text)."""
    full = normalize_image(image)
    if why == "registry":
        host = registry_of(image)
        repo, _, ref = full.split("/", 1)[1].partition("@")
        if not ref:
            repo, _, ref = repo.rpartition(":")
        return (f'rpc error: code = Unknown desc = failed to pull and unpack image "{full}": failed to resolve reference '
                f'"{full}": failed to do request: Head "https://{host}/v2/{repo}/manifests/{ref}": dial tcp: lookup '
                f'{host.split(":", 1)[0]}: no such host')
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{full}": failed to resolve reference '
            f'"{full}": {full}: not found')
