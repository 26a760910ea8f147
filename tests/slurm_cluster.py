"""A throw-away single-node Slurm cluster for tests (see scripts/install_slurm.sh).

``SlurmCluster(workdir)`` starts, as the current user (root), everything a job
dispatcher such as submitit needs, all private to ``workdir``:

* ``munged`` with its own key (Slurm's authentication);
* ``mariadbd`` on a free loopback port, with a fresh datadir;
* ``slurmdbd``, the accounting daemon, backed by that MariaDB;
* ``slurmctld`` and ``slurmd`` for one node (this machine, at 127.0.0.1) in a
  partition ``debug`` that hands out single CPUs (several 1-CPU jobs at once).

Accounting is not optional: submitit learns a job's state from ``sacct``.
Without slurmdbd, a job that ends without writing a result (cancelled, killed,
node failure) stays "UNKNOWN" forever and ``job.result()`` hangs.

munged insists that every directory above its socket be world-executable and
Unix sockets have short paths, so the sockets live in a small private directory
under /tmp (removed by ``stop()``); everything else is under ``workdir``.
Daemons get PR_SET_PDEATHSIG, so they die with the test process even if it is
killed before ``stop()`` runs.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "mariadbd|mysqld", "mariadb-install-db|mysql_install_db", "mysql|mariadb",
            "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sacctmgr", "sinfo")
CLUSTER = "miue"
DB_PASSWORD = "slurm-test"


def square(x: int) -> int:
    """A trivial job for the tests (importable by the job's Python)."""
    return x * x


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _which(alternatives: str) -> str | None:
    for name in alternatives.split("|"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class SlurmCluster:
    def __init__(self, workdir: Path, timeout: float = 120.0):
        self.workdir = Path(workdir).resolve()
        self.timeout = timeout
        self.conf = self.workdir / "etc" / "slurm.conf"
        self.rundir: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: list[Path] = []  # shown (tails) when something fails

    @staticmethod
    def available() -> str | None:
        """None if Slurm, munge and MariaDB are installed, else what is missing."""
        missing = [b for b in BINARIES if _which(b) is None]
        if os.geteuid() != 0:
            missing.append("(root privileges)")
        if missing:
            return "Slurm test cluster unavailable, missing: " + ", ".join(missing) + \
                " (run scripts/install_slurm.sh as root)"
        return None

    @property
    def env(self) -> dict[str, str]:
        """Environment variables for processes talking to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ---------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], **kw) -> None:
        log = self.workdir / "log" / f"{name}.out"
        self.logs.append(log)
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **self.env}, preexec_fn=_die_with_parent, **kw)

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                             env={**os.environ, **self.env})
        if check and res.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}"
                               + self._log_tails())
        return res

    def _log_tails(self, lines: int = 15) -> str:
        out = ["\n" + ", ".join(f"{n}: " + ("running" if p.poll() is None else f"exited {p.returncode}")
                                for n, p in self.procs.items())]
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(none)"]
            out.append(f"\n--- {log}:\n" + "\n".join(text))
        return "".join(out)

    def _wait_for(self, what: str, ready, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}" + self._log_tails())
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}" + self._log_tails())

    # -- start / stop ----------------------------------------------------------------------------
    def start(self) -> None:
        if msg := self.available():
            raise RuntimeError(msg)
        w = self.workdir
        for sub in ("etc", "log", "state", "spool", "munge", "db"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        self.rundir = Path(tempfile.mkdtemp(prefix="slurm-test-"))
        self.rundir.chmod(0o755)  # munged requires a world-executable path to its socket
        munge_sock, db_sock = self.rundir / "munge.sock", self.rundir / "mysql.sock"
        db_port, dbd_port, ctld_port, slurmd_port = _free_ports(4)
        host = socket.gethostname()

        # munge
        (w / "munge").chmod(0o700)
        key = w / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", [_which("munged"), "--foreground", f"--key-file={key}",
                               f"--socket={munge_sock}", f"--pid-file={w / 'munge' / 'munged.pid'}",
                               f"--seed-file={w / 'munge' / 'munged.seed'}"])

        # MariaDB
        datadir = w / "db" / "data"
        mysql = [_which("mysql|mariadb"), "--no-defaults", f"--socket={db_sock}", "-uroot"]
        self.logs.append(w / "log" / "mariadb-install-db.log")
        with open(self.logs[-1], "wb") as out:
            res = subprocess.run(
                [_which("mariadb-install-db|mysql_install_db"), "--no-defaults", f"--datadir={datadir}",
                 "--user=root", "--auth-root-authentication-method=normal", "--skip-test-db"],
                stdout=out, stderr=subprocess.STDOUT, timeout=120)
        if res.returncode:
            raise RuntimeError("mariadb-install-db failed" + self._log_tails())
        self._spawn("mariadbd", [_which("mariadbd|mysqld"), "--no-defaults", f"--datadir={datadir}",
                                 "--user=root", "--bind-address=127.0.0.1", f"--port={db_port}",
                                 f"--socket={db_sock}", f"--pid-file={w / 'db' / 'mariadbd.pid'}",
                                 "--skip-log-bin", "--innodb-buffer-pool-size=64M",
                                 f"--log-error={w / 'log' / 'mariadbd.err'}"])
        self.logs.append(w / "log" / "mariadbd.err")
        self._wait_for("MariaDB", lambda: subprocess.run(
            mysql + ["-e", "SELECT 1"], capture_output=True, timeout=30).returncode == 0)
        self._run(*mysql, "-e", f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
                  "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")

        # slurmdbd
        auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_sock}\n"
        dbd_conf = w / "etc" / "slurmdbd.conf"
        dbd_conf.write_text(
            f"{auth}DbdHost={host}\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"LogFile={w / 'log' / 'slurmdbd.log'}\nPidFile={w / 'state' / 'slurmdbd.pid'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={db_port}\n"
            f"StorageUser=slurm\nStoragePass={DB_PASSWORD}\nStorageLoc=slurm_acct_db\n")
        dbd_conf.chmod(0o600)

        # slurm.conf. AccountingStoragePass names the munge socket for talking to slurmdbd
        # (AuthInfo alone is not used there: sacctmgr would look for /run/munge).
        node = self._run(_which("slurmd"), "-C").stdout.splitlines()[0]  # NodeName=... CPUs=...
        self.conf.write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
{auth}CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
StateSaveLocation={w / 'state'}
SlurmdSpoolDir={w / 'spool'}
SlurmctldPidFile={w / 'state' / 'slurmctld.pid'}
SlurmdPidFile={w / 'state' / 'slurmd.pid'}
SlurmctldLogFile={w / 'log' / 'slurmctld.log'}
SlurmdLogFile={w / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MaxArraySize=100001
MaxJobCount=100000
MinJobAge=60
KillWait=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={munge_sock}
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        # slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self.logs.append(w / "log" / "slurmdbd.log")
        self._wait_for("slurmdbd", lambda: self._run(
            "sacctmgr", "-n", "-P", "show", "cluster", check=False).returncode == 0)
        if CLUSTER not in self._run("sacctmgr", "-n", "-P", "show", "cluster", "format=cluster").stdout:
            self._run("sacctmgr", "-i", "add", "cluster", CLUSTER)

        # controller and node
        self._spawn("slurmctld", [_which("slurmctld"), "-D"])
        self.logs.append(w / "log" / "slurmctld.log")
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", node.split()[0].split("=", 1)[1]])
        self.logs.append(w / "log" / "slurmd.log")

        def ready() -> bool:
            states = self._run("sinfo", "-h", "-o", "%T", check=False)
            return states.returncode == 0 and states.stdout.split() == ["idle"] and \
                self._run("sacct", "-n", "-X", check=False).returncode == 0
        self._wait_for("the node to be idle", ready)

    def _strays(self) -> list[int]:
        """PIDs of processes (slurmstepd, jobs) started by this cluster outside our children."""
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    if marker in (proc / "environ").read_bytes().split(b"\0"):
                        pids.append(int(proc.name))
                except OSError:
                    pass
        return pids

    def stop(self) -> None:
        """Kill every daemon (and job) this cluster started: SIGTERM, then SIGKILL."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            # jobs first (else slurmd lingers on shutdown); KillWait=2 bounds how long that takes
            try:
                self._run("scancel", "--quiet", "--partition=debug", check=False)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and self._run("squeue", "-h", check=False).stdout.strip():
                    time.sleep(0.5)
            except (OSError, subprocess.SubprocessError):
                pass  # the daemons and jobs are killed below anyway
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        own = {p.pid for p in self.procs.values()}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            strays = [p for p in self._strays() if p not in own]
            for pid in strays:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if strays and sig == signal.SIGTERM:
                time.sleep(2)
        if self.rundir is not None:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None
