"""A real one-node SLURM cluster on localhost for tests (README.md, "Sweeps: summaries,
launchers", the `hydra/launcher=slurm` paragraph): munge, slurmctld and slurmd started as
daemons with their state under a temp dir, stopped again afterwards."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "sinfo")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
# How a test sweep asks the one-node cluster for its jobs: its partition, no GPU, small jobs.
LAUNCHER_ARGS = (
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=10",
)


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return (
            f"SLURM not installed ({', '.join(absent)} missing): "
            "apt-get install -y slurm-wlm munge (.ci/run does)"
        )
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    return None


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kwargs)


def _start_munge() -> None:
    key = Path("/etc/munge/munge.key")
    for d in ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    if _run("sh", "-c", "munge -n | unmunge").returncode != 0:
        _run("runuser", "-u", "munge", "--", shutil.which("munged"))
        for _ in range(50):
            if _run("sh", "-c", "munge -n | unmunge").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("munged did not start")


def _slurm_conf(state: Path) -> str:
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mib = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2048)
    return f"""ClusterName=xenttest
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
NodeName={host} CPUs={cpus} RealMemory={mem_mib} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """`with Cluster(tmp) as c:` a running one-node cluster whose partition is `debug`."""

    def __init__(self, state: Path):
        self.state = state
        self._saved_conf: bytes | None = None

    def __enter__(self) -> Cluster:
        (self.state / "ctld").mkdir(parents=True, exist_ok=True)
        (self.state / "d").mkdir(parents=True, exist_ok=True)
        _start_munge()
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.exists():
            self._saved_conf = SLURM_CONF.read_bytes()
        SLURM_CONF.write_text(_slurm_conf(self.state))
        for daemon in ("slurmctld", "slurmd"):
            proc = _run(daemon)
            if proc.returncode != 0:
                self.__exit__(None, None, None)
                raise RuntimeError(f"{daemon} failed: {proc.stderr.strip()[:300]}")
        for _ in range(100):
            if "idle" in _run("sinfo", "-h", "-o", "%t").stdout:
                return self
            time.sleep(0.2)
        log = (self.state / "slurmctld.log").read_text()[-500:]
        self.__exit__(None, None, None)
        raise RuntimeError(f"the node never became idle: {log}")

    def __exit__(self, *exc) -> None:
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            path = self.state / pid_file
            try:
                os.kill(int(path.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
        if self._saved_conf is not None:
            SLURM_CONF.write_bytes(self._saved_conf)
        else:
            SLURM_CONF.unlink(missing_ok=True)
