"""What the emulated kubelet's containers do once a pod has started: image pulls against the lab's
catalogue (images.py), commands that exit, restarts per restartPolicy with the kubelet's back-off,
readiness after a probe's initialDelaySeconds, and containers that ignore SIGTERM. All waits are in
lab-clock time (`fleetdr-lab clock advance` moves them), through the clock's one timer heap.

A container's command is read, not run. It exits when it amounts to `false`, `/bin/false`, `true`,
`exit N`, `sleep N` (after N seconds of lab clock) or a `sh -c` script of such commands joined by
`;`, `&&`, `||` or newlines (`sleep 5; exit 3`); `sleep infinity` and anything else run forever
(pods of Jobs whose command says nothing: they finish after a moment, as the lab always did).
A script with `trap '' TERM` (or `trap "" TERM`, SIGTERM, 15) ignores SIGTERM: its pod, deleted,
stays Terminating until the grace period has passed.

Kubelet rules followed (kubernetes pkg/kubelet):
- image pulls (images/image_manager.go): a failed pull is waiting reason ErrImagePull with the
  runtime's error as message; until the pull back-off (10 s doubling to 300 s,
  client-go util/flowcontrol Backoff) has passed it is ImagePullBackOff `Back-off pulling image "X"`;
- restarts (kuberuntime/kuberuntime_manager.go doBackOff, computePodActions): a container that
  exited restarts when restartPolicy is Always, or OnFailure with a non-zero exit code; the first
  restart is immediate, later ones wait the back-off (10 s, 20 s, 40 s ... 300 s; reset when the
  last restart is more than 600 s ago) as waiting reason CrashLoopBackOff,
  `back-off 10s restarting failed container=C pod=NAME_NS(UID)`, with lastState.terminated
  (reason Error / Completed, exitCode) and restartCount counting the restarts;
- the pod phase (kubelet_pods.go getPhase): Pending while a container never started, Running while
  any runs or restarts, else Succeeded when all exited 0, Failed when one did not (restartPolicy
  Never); Ready/ContainersReady (status/generate.go) False with ContainersNotReady and
  `containers with unready status: [c]`, PodCompleted once Succeeded;
- probes (prober/worker.go): no readiness (or startup) probe result before initialDelaySeconds.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shlex

from .images import POLICY, pull_error, valid_reference
from .podspec import JOB_RUN_DELAY, image_id, normalize_image

BACKOFF_INITIAL = 10.0     # kubelet: backOffPeriod
BACKOFF_MAX = 300.0        # kubelet: MaxContainerBackOff (also the image pull back-off cap)
PULL_BACKOFF_SHOWN = 1.0   # lab seconds from a failed pull to the pod worker's next sync (ImagePullBackOff)
SHELLS = {"sh", "bash", "ash", "dash", "zsh", "ksh"}
_SLEEP_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Program:
    """What a container's command amounts to: exits after `runs` lab seconds with `code`, or runs
    forever (runs None); `known` False when the command says nothing the lab understands."""
    __slots__ = ("runs", "code", "ignores_term", "known")

    def __init__(self, runs, code=0, ignores_term=False, known=True):
        self.runs, self.code, self.ignores_term, self.known = runs, code, ignores_term, known


def _sleep_seconds(words) -> float | None:
    total = 0.0
    for w in words:
        if w in ("infinity", "inf"):
            return None
        m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)", w)
        if not m:
            raise ValueError(w)
        total += float(m.group(1)) * _SLEEP_UNITS[m.group(2)]
    return total


def _segments(script: str):
    """(operator before, words) of a shell script made of simple commands; None when it has
    anything else (pipes, loops, redirections, sub-shells, background jobs)."""
    lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    out, words, op = [], [], ";"
    for t in tokens:
        if t in (";", "&&", "||"):
            if words:
                out.append((op, words))
            words, op = [], t
        elif t and set(t) <= set("();<>|&"):
            return None
        else:
            words.append(t)
    if words:
        out.append((op, words))
    return out


def program_of(container: dict) -> Program:
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        return Program(None, known=False)
    if os.path.basename(argv[0]) in SHELLS and len(argv) >= 3 and \
            argv[1].startswith("-") and "c" in argv[1]:
        segments = _segments(argv[2])
        if segments is None:
            return Program(None, known=False, ignores_term=_traps_term(argv[2]))
    else:
        segments = [(";", argv)]
    elapsed, status, ignores = 0.0, 0, False
    for op, words in segments:
        if (op == "&&" and status != 0) or (op == "||" and status == 0):
            continue
        while words and words[0] == "exec":
            words = words[1:]
        if not words:
            continue
        cmd = os.path.basename(words[0])
        if cmd in ("true", ":"):
            status = 0
        elif cmd == "false":
            status = 1
        elif cmd == "exit":
            try:
                return Program(elapsed, (int(words[1]) if len(words) > 1 else status) & 0xFF, ignores)
            except ValueError:
                return Program(elapsed, 2, ignores)  # sh: exit: Illegal number
        elif cmd == "sleep":
            try:
                seconds = _sleep_seconds(words[1:]) if len(words) > 1 else None
            except ValueError:
                return Program(None, known=False, ignores_term=ignores)
            if seconds is None:
                return Program(None, ignores_term=ignores)
            elapsed += seconds
            status = 0
        elif cmd == "trap":
            if len(words) >= 3 and words[1] == "" and any(s.upper() in ("TERM", "SIGTERM", "15") for s in words[2:]):
                ignores = True
            status = 0
        elif cmd in ("echo", "printf", "date", "set"):
            status = 0
        else:
            return Program(None, known=False, ignores_term=ignores)
    return Program(elapsed, status, ignores)


def _traps_term(script: str) -> bool:
    return bool(re.search(r"""trap\s+(''|"")\s+([A-Z0-9 ]*\s)?(SIG)?(TERM|15)\b""", script))


def format_go_duration(seconds: float) -> str:
    """time.Duration.String() of whole seconds: 10s, 1m20s, 5m0s."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{secs}s"


def _probe_delay(container: dict) -> float:
    """Lab seconds after the start before the container can be ready: the readiness and startup
    probes' initialDelaySeconds (a liveness probe's delay only postpones liveness checks, which the
    lab's containers always pass)."""
    return float(max(((container.get(p) or {}).get("initialDelaySeconds") or 0)
                     for p in ("readinessProbe", "startupProbe")))


class ContainerRun:
    """One container of a started pod."""

    def __init__(self, container: dict, job_pod: bool):
        self.name = container.get("name")
        self.image = container.get("image") or ""
        self.program = program_of(container)
        if job_pod and not self.program.known:
            self.program = Program(random.uniform(*JOB_RUN_DELAY), 0, self.program.ignores_term, False)
        self.startup_delay = float(((container.get("startupProbe") or {}).get("initialDelaySeconds")) or 0)
        self.ready_delay = _probe_delay(container)
        self.restart_count = 0
        self.state = "waiting"           # waiting | running | terminated
        self.action = "pull"             # what happens at next_at while waiting: pull | shown | restart
        self.next_at: float | None = None
        self.reason, self.message = "ContainerCreating", ""
        self.pulled = False
        self.cid = ""
        self.started_at = self.ready_at = self.started_flag_at = self.ends_at = None
        self.ready = False
        self.terminated: dict = {}
        self.last_terminated: dict = {}
        self.backoff = self.backoff_at = None              # crash back-off (flowcontrol.Backoff entry)
        self.pull_backoff = self.pull_backoff_at = None    # image pull back-off

    def due(self):
        """(lab time, action) of this container's next transition, or None."""
        if self.state == "waiting":
            return (self.next_at, self.action) if self.next_at is not None else None
        if self.state == "running":
            events = [(t, a) for t, a in ((self.started_flag_at, "started"), (self.ready_at, "ready"), (self.ends_at, "exit"))
                      if t is not None]
            return min(events) if events else None
        return None

    def running_and_ignores_term(self) -> bool:
        return self.state == "running" and self.program.ignores_term


def _next_backoff(current, updated_at, now):
    """flowcontrol.Backoff.Next: start at 10 s, double up to 300 s, start over after 2 x max idle."""
    if current is None or now - updated_at > 2 * BACKOFF_MAX:
        return BACKOFF_INITIAL
    return min(current * 2, BACKOFF_MAX)


class PodRun:
    """The containers of one started pod and their transitions in lab time."""

    def __init__(self, pod: dict, cluster_name: str | None, job_pod: bool):
        m = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        self.uid = m.get("uid")
        self.pod_ref = f"{m.get('name')}_{m.get('namespace')}({m.get('uid')})"   # format.Pod
        self.restart_policy = spec.get("restartPolicy") or "Always"
        self.cluster = cluster_name
        self.containers = [ContainerRun(c, job_pod) for c in spec.get("containers") or []]
        # kubelet events of the failure paths (pkg/kubelet/events): (type, reason, message), taken by
        # the caller; the ordinary start (Pulled/Created/Started) writes none, to keep starts cheap
        self.events: list[tuple[str, str, str]] = []

    # -- transitions --------------------------------------------------------------------------
    def run_until(self, now: float) -> bool:
        """Apply every transition due by lab time `now`, in time order. True if anything changed."""
        changed = False
        for _ in range(10000):  # a long clock advance replays many restarts; never loop forever
            due = [(d, c) for c in self.containers for d in [c.due()] if d is not None and d[0] <= now]
            if not due:
                break
            (t, action), c = min(due, key=lambda x: x[0][0])
            getattr(self, "_" + action)(c, t)
            changed = True
        return changed

    def next_at(self):
        times = [d[0] for c in self.containers for d in [c.due()] if d is not None]
        return min(times) if times else None

    def begin(self, now: float):
        for c in self.containers:
            c.next_at, c.action = now, "pull"
        self.run_until(now)

    def _pull(self, c: ContainerRun, t: float):
        if not c.pulled:
            if not valid_reference(c.image):
                # images/image_manager.go: applyDefaultImageTag fails; retried on every sync
                c.reason = "InvalidImageName"
                c.message = f'Failed to apply default image tag "{c.image}": couldn\'t parse image reference "{c.image}": invalid reference format'
                c.next_at = None
                return
            ok, why = POLICY.verdict(c.image, self.cluster)
            if not ok:
                c.pull_backoff = _next_backoff(c.pull_backoff, c.pull_backoff_at, t)
                c.pull_backoff_at = t
                c.reason, c.message = "ErrImagePull", pull_error(c.image, why)
                self.events += [("Warning", "Failed", f'Failed to pull image "{c.image}": {c.message}'),
                                ("Warning", "Failed", "Error: ErrImagePull")]
                c.action, c.next_at = "shown", t + min(PULL_BACKOFF_SHOWN, c.pull_backoff)
                return
            c.pulled = True
        self._start(c, t)

    def _shown(self, c: ContainerRun, t: float):
        c.reason, c.message = "ImagePullBackOff", f'Back-off pulling image "{c.image}"'
        self.events += [("Normal", "BackOff", c.message), ("Warning", "Failed", "Error: ImagePullBackOff")]
        c.action, c.next_at = "pull", c.pull_backoff_at + c.pull_backoff

    def _start(self, c: ContainerRun, t: float):
        c.state, c.started_at, c.next_at = "running", t, None
        c.reason = c.message = ""
        c.cid = hashlib.sha256(f"{self.uid}/{c.name}/{c.restart_count}/{t}/{random.random()}".encode()).hexdigest()
        c.terminated = {}
        c.ready = False
        c.started_flag_at = t + c.startup_delay if c.startup_delay > 0 else None
        c.ready_at = t + c.ready_delay if c.ready_delay > 0 else None
        if c.ready_at is None:
            c.ready = True
        c.ends_at = t + c.program.runs if c.program.runs is not None else None

    def _started(self, c: ContainerRun, t: float):
        c.started_flag_at = None

    def _ready(self, c: ContainerRun, t: float):
        c.ready, c.ready_at = True, None

    def _exit(self, c: ContainerRun, t: float, code: int | None = None):
        code = c.program.code if code is None else code
        c.terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                        "startedAt": c.started_at, "finishedAt": t, "containerID": f"containerd://{c.cid}"}
        c.ready = False
        c.ready_at = c.ends_at = c.started_flag_at = None
        if not (self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)):
            c.state = "terminated"
            return
        c.last_terminated = dict(c.terminated)
        if c.backoff is not None and t - c.backoff_at <= 2 * BACKOFF_MAX:
            # kuberuntime_manager.go doBackOff: still in back-off since the container finished
            c.state, c.action, c.next_at = "waiting", "restart", t + c.backoff
            c.reason = "CrashLoopBackOff"
            c.message = f"back-off {format_go_duration(c.backoff)} restarting failed container={c.name} pod={self.pod_ref}"
            self.events.append(("Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {self.pod_ref}"))
            return
        self._restart(c, t)

    def _restart(self, c: ContainerRun, t: float):
        c.backoff = _next_backoff(c.backoff, c.backoff_at, t)
        c.backoff_at = t
        c.restart_count += 1
        self._start(c, t)

    # -- status ---------------------------------------------------------------------------------
    def terminal_phase(self) -> str | None:
        if any(c.state != "terminated" for c in self.containers):
            return None
        return "Succeeded" if all(c.terminated.get("exitCode") == 0 for c in self.containers) else "Failed"

    def phase(self) -> str:
        """kubelet_pods.go getPhase (no init containers left: they ran before)."""
        running = waiting = stopped = succeeded = 0
        for c in self.containers:
            if c.state == "running":
                running += 1
            elif c.state == "terminated":
                stopped += 1
                succeeded += c.terminated.get("exitCode") == 0
            elif c.last_terminated:
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if self.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if self.restart_policy == "Never" else "Running"

    def container_statuses(self, ts) -> list[dict]:
        """containerStatuses; ts(lab seconds) -> RFC 3339 string."""
        out = []
        for c in self.containers:
            cs = {"name": c.name, "image": normalize_image(c.image), "imageID": image_id(c.image) if c.pulled else "",
                  "ready": c.ready, "restartCount": c.restart_count,
                  "started": c.state == "running" and c.started_flag_at is None,
                  "lastState": {"terminated": _terminated(c.last_terminated, ts)} if c.last_terminated else {}}
            if c.cid:
                cs["containerID"] = f"containerd://{c.cid}"
            if c.state == "running":
                cs["state"] = {"running": {"startedAt": ts(c.started_at)}}
            elif c.state == "terminated":
                cs["state"] = {"terminated": _terminated(c.terminated, ts)}
            else:
                waiting = {"reason": c.reason}
                if c.message:
                    waiting["message"] = c.message
                cs["state"] = {"waiting": waiting}
            out.append(cs)
        return out

    def unready(self) -> list[str]:
        return [c.name for c in self.containers if not c.ready]

    def ignores_term(self) -> bool:
        return any(c.running_and_ignores_term() for c in self.containers)


def _terminated(t: dict, ts) -> dict:
    return {"exitCode": t["exitCode"], "reason": t["reason"], "startedAt": ts(t["startedAt"]),
            "finishedAt": ts(t["finishedAt"]), "containerID": t["containerID"]}
