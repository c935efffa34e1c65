"""The embedded default: a private PostgreSQL cluster under a data directory.

With no `databases` section, notifyd and notifyctl share one cluster under `embedded.data_dir`:
the first user initialises and starts it, later users find it running and reuse it. It listens
on a Unix socket inside the data directory only (listen_addresses = ''), so it never takes a TCP
port and nothing off the machine can reach it.

Who stops it: a process that starts the cluster leaves a marker file; every user holds a shared
flock on `<data_dir>.users` while it uses the cluster; on release, a process that can take that
lock exclusively (no one else is using the cluster) and finds the marker stops it. A cluster that
was already running without the marker (started by hand) is never stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from engine.config import SECTIONS
from engine.errors import NotifyError

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
PORT = 5432
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
# Written to postgresql.conf at initdb (a cluster made earlier keeps its own). PostgreSQL's
# 128MB of shared buffers is a second copy of pages the kernel's page cache holds anyway, and
# every page of it that is touched counts as this cluster's memory; with 32MB the ingest
# benchmark (50,000 alerts, bench/am_api_bench.py) spent the same PostgreSQL CPU and its
# cluster's memory (PSS) fell by about 100 MB.
DEFAULT_SETTINGS = {"shared_buffers": "32MB"}


def find_bin_dir(explicit: str | None = None) -> Path:
    """Directory holding initdb, pg_ctl and postgres: config, PATH, pg_config, then Debian's layout."""
    if explicit:
        if all((Path(explicit) / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(explicit)
        raise NotifyError(f"embedded.bin_dir: {explicit} does not hold initdb, pg_ctl and postgres; "
                          "point it at the PostgreSQL server's bin directory or leave it out")
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(p: str) -> int:
        match = re.search(r"/(\d+)/bin$", p)
        return int(match.group(1)) if match else 0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise NotifyError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on "
        "PATH, through pg_config --bindir or under /usr/lib/postgresql/*/bin: install the PostgreSQL "
        "server (Debian: apt-get install postgresql) or set `databases` to use an existing server"
    )


def _run_as_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise NotifyError(
            f"embedded.run_as: user {name!r} does not exist; initdb refuses to run as "
            "root, so the embedded cluster needs an unprivileged user to own it"
        ) from None


def unreachable_ancestor(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing directory above `path` that `user` cannot enter (None: all can be entered).
    Directories not made yet are created by us, searchable (mkdir under the usual umask)."""
    for parent in reversed(path.parents):
        try:
            st = parent.stat()
        except FileNotFoundError:
            break
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            return parent
    return None


def relocated_data_dir(configured: Path, user: pwd.struct_passwd) -> Path:
    """Where a cluster that `user` cannot reach at `configured` lives instead: under that user's home
    directory (which it can enter by definition), one directory per configured path, so notifyd and
    notifyctl started from the same clone find the same cluster."""
    digest = hashlib.sha256(str(configured).encode()).hexdigest()[:16]
    return Path(user.pw_dir) / "notify-engine" / digest / configured.name


def place_for_run_as(configured: Path, user: pwd.struct_passwd) -> Path:
    """The data directory to use for a relative `embedded.data_dir` when run as root.

    Root working in its home directory (mode 0700: a clone in a container or on a fresh server) puts
    the default `.notify/pg` where `run_as` cannot enter. Instead of changing the permissions of
    the user's directories, the cluster then lives under run_as's home, and one log line says where.
    A cluster already placed there stays in use even if the clone later becomes reachable."""
    relocated = relocated_data_dir(configured, user)
    blocked = unreachable_ancestor(configured, user)
    if blocked is None and ((configured / "PG_VERSION").exists() or not (relocated / "PG_VERSION").exists()):
        return configured
    if not Path(user.pw_dir).is_dir() or unreachable_ancestor(relocated, user) is not None:
        raise NotifyError(
            f"embedded.data_dir: {configured} is not reachable by user {user.pw_name} "
            f"({blocked} is not searchable by others) and that user has no home directory to hold the "
            "cluster instead; set embedded.data_dir to a directory that user can enter, such as /var/lib/notify-engine"
        )
    first_time = not (relocated / "PG_VERSION").exists()
    for directory, mode in ((relocated.parent.parent, 0o755), (relocated.parent, 0o700)):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue  # existing directories are left as they are (notifyd and notifyctl may race here)
        os.chown(directory, user.pw_uid, user.pw_gid)
    origin = relocated.parent / "origin"  # which clone this cluster belongs to, for a person looking
    if not origin.exists():
        origin.write_text(f"{configured}\n")
    why = f"{blocked} is not searchable by others" if blocked else "the cluster was placed there before"
    (log.warning if first_time else log.info)(
        "embedded PostgreSQL: %s is not reachable by user %s (%s); the cluster lives in %s",
        configured, user.pw_name, why, relocated)
    return relocated


@dataclass
class EmbeddedCluster:
    data_dir: Path
    bin_dir: Path
    run_as: str | None  # OS user owning the cluster; None means the current user
    settings: dict[str, str] | None = None  # extra postgresql.conf settings written at initdb

    @classmethod
    def from_config(cls, embedded, settings: dict[str, str] | None = None) -> "EmbeddedCluster":
        run_as = embedded.run_as if os.geteuid() == 0 else None
        data_dir = Path(embedded.data_dir).absolute()
        if run_as and not Path(embedded.data_dir).is_absolute():
            data_dir = place_for_run_as(data_dir, _run_as_user(run_as))
        return cls(
            data_dir=data_dir,
            bin_dir=find_bin_dir(embedded.bin_dir),
            run_as=run_as,
            settings=settings,
        )

    def __post_init__(self) -> None:
        self._users_lock_fd: int | None = None
        socket = self.data_dir / f".s.PGSQL.{PORT}"
        if len(str(socket)) > _SOCKET_PATH_MAX:
            raise NotifyError(
                f"embedded.data_dir: {self.data_dir} is too long for a Unix socket path "
                f"({len(str(socket))} > {_SOCKET_PATH_MAX} bytes); choose a shorter directory"
            )

    # ----------------------------------------------------------------- paths

    @property
    def socket_dir(self) -> Path:
        return self.data_dir

    @property
    def _marker(self) -> Path:
        return self.data_dir.parent / (self.data_dir.name + ".started-by-notify-engine")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir), safe='/')}&port={PORT}"

    def urls(self) -> dict[str, str]:
        return {section: self.url(section) for section in SECTIONS}

    # ----------------------------------------------------------------- lifecycle

    def acquire(self) -> None:
        """Make sure the cluster is initialised and running, and register as one of its users."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with self._exclusive(self.data_dir.parent / (self.data_dir.name + ".lock")):
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if not self.is_running():
                self._start()
                self._marker.touch()
            self._create_databases()
        fd = os.open(self.data_dir.parent / (self.data_dir.name + ".users"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
        self._users_lock_fd = fd

    def release(self) -> None:
        """Stop using the cluster; stop it when we are its last user and one of us started it."""
        fd, self._users_lock_fd = self._users_lock_fd, None
        if fd is None:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # someone else still uses it: they stop it when they are done
            if self._marker.exists() and self.is_running():
                self.stop()
            self._marker.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self._run(["pg_ctl", "-D", str(self.data_dir), "status"], check=False)
        return result.returncode == 0

    def stop(self) -> None:
        self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        log.info("embedded PostgreSQL stopped", extra={"data_dir": str(self.data_dir)})

    # ----------------------------------------------------------------- internals

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            user = _run_as_user(self.run_as)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            self._check_reachable_by(user)
        os.chmod(self.data_dir, 0o700)
        log.info("initialising embedded PostgreSQL", extra={"data_dir": str(self.data_dir)})
        self._run([
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-instructions",
        ])
        conf = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            "port": str(PORT),
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "logging_collector": "off",
            **DEFAULT_SETTINGS,
        }
        conf.update(self.settings or {})
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write("\n# notify-engine embedded cluster\n")
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")

    def _check_reachable_by(self, user: pwd.struct_passwd) -> None:
        for parent in self.data_dir.parents:
            mode = parent.stat()
            if parent.stat().st_uid != user.pw_uid and not mode.st_mode & 0o001:
                raise NotifyError(
                    f"embedded.data_dir: {self.data_dir} is not reachable by user {user.pw_name} "
                    f"({parent} is not searchable by others); choose a data_dir under a directory "
                    "that user can enter, such as /var/lib/notify-engine, or a relative one (placed "
                    "under that user's home when unreachable)"
                )

    def _start(self) -> None:
        log_file = self.data_dir / "server.log"
        result = self._run(
            ["pg_ctl", "-D", str(self.data_dir), "-l", str(log_file), "-w", "-t", "60", "start"], check=False
        )
        if result.returncode != 0:
            tail = ""
            try:
                tail = "; ".join(log_file.read_text().strip().splitlines()[-3:])
            except OSError:
                pass
            raise NotifyError(f"embedded PostgreSQL in {self.data_dir} did not start: {tail or result.stderr.strip()}")
        log.info("embedded PostgreSQL started", extra={"data_dir": str(self.data_dir)})

    def _create_databases(self) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in SECTIONS:
                if name not in existing:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        # Run from / so the unprivileged user never needs access to our working directory.
        result = subprocess.run(argv, capture_output=True, text=True, cwd="/", stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            tool = next(Path(a).name for a in argv if a.startswith(str(self.bin_dir)))
            raise NotifyError(f"{tool} failed for {self.data_dir}: {(result.stderr or result.stdout).strip()}")
        return result

    @staticmethod
    @contextlib.contextmanager
    def _exclusive(path: Path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
