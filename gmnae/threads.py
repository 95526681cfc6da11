"""How many CPU threads torch may use: the CPUs this process can run on, less what others keep busy.

torch's default is one thread per core of the machine. On a shared machine (a cluster node, a CI
runner, a laptop running something else) those threads spin against the other processes (many times slower
than one thread each; benchmarks/README.md). So every `gmnae` command chooses:

    threads = min(CPUs we may use (affinity, cgroup quota), CPUs of the machine - CPUs others keep busy), >= 1

unless told: the `threads` config key (`gmnae train threads=4`), `gmnae zoo build --threads`,
`GMNAE_THREADS=N` for any command, or an OMP_NUM_THREADS the user exported.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ENV = "GMNAE_THREADS"
CHOSEN = "GMNAE_THREADS_CHOSEN"  # marks an OMP_NUM_THREADS that gmnae set, so a later choice may redo it


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers, SLURM)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_quota() -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 cpu.max, v1 cfs quota / period), None if unlimited."""
    try:
        v2 = Path("/sys/fs/cgroup/cpu.max")
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        q, p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if q.exists() and p.exists() and int(q.read_text()) > 0:
            return int(q.read_text()) / int(p.read_text())
    except (OSError, ValueError):
        pass
    return None


def busy_cpus() -> float:
    """CPUs other processes keep busy: the 1-minute load average, or the threads runnable right now (less
    this one) when that is more -- a job started a moment ago is not in the average yet."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        return max(float(fields[0]), float(fields[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def auto_threads(running_here: int = 0) -> int:
    """Usable CPUs less those the machine's other work keeps busy, at least 1. `running_here`: threads of
    this process already running, which the load average counts as other work (e.g. a caller mid-computation)."""
    cpus = usable_cpus()
    idle = (os.cpu_count() or cpus) - max(0.0, busy_cpus() - running_here)
    return max(1, min(cpus, math.floor(idle + 0.5)))


def choose_threads(setting: int | None = None, processes: int = 1) -> tuple[int, str]:
    """(threads, why): an explicit setting, GMNAE_THREADS, the user's OMP_NUM_THREADS, else auto, shared
    among `processes` processes of this machine (CPU DDP ranks)."""
    if setting:
        return int(setting), "setting"
    for env in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(env, "")
        if env == "OMP_NUM_THREADS" and value == os.environ.get(CHOSEN):
            continue  # our own earlier choice (this process's or its parent's), not the user's
        if value.isdigit() and int(value) > 0:
            return int(value), env
    return max(1, auto_threads() // max(1, processes)), "auto"


def apply_threads(setting: int | None = None, processes: int = 1) -> int:
    """Use the chosen thread count in this process and the ones it starts (DDP ranks inherit the env)."""
    n, why = choose_threads(setting, processes)
    os.environ["OMP_NUM_THREADS"] = str(n)  # read by torch when it loads, and by child processes
    if why == "auto":
        os.environ[CHOSEN] = str(n)
    else:
        os.environ.pop(CHOSEN, None)
    if "torch" in sys.modules:  # loaded already: tell it directly
        import torch

        torch.set_num_threads(n)
    return n


def external_launch() -> bool:
    """True when another launcher (torchrun, srun, a Lightning parent) started several processes."""
    return any(int(os.environ.get(k, "1")) > 1 for k in ("WORLD_SIZE", "SLURM_NTASKS")) or "LOCAL_RANK" in os.environ
