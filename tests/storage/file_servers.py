"""Real SFTP (OpenSSH) and SMB (Samba) servers on loopback for the storage tests.

Debian's openssh-server and samba are installed by the test set-up when missing (as root, with
apt-get: CI runs on the same kind of machine); a machine where that is impossible skips these tests
with the reason. Each server runs from its own folder with its own configuration and is stopped by
its process id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port

PACKAGES = {"sshd": "openssh-server", "smbd": "samba"}
SBIN = ("/usr/sbin", "/usr/bin", "/sbin")


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in SBIN if os.access(f"{d}/{name}", os.X_OK)), None
    )


def ensure_installed(*programs: str) -> None:
    missing = [p for p in programs if _which(p) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"{', '.join(missing)} not installed and cannot be installed here (needs root and apt-get)"
        )
    packages = [PACKAGES[p] for p in missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
            check=True, env=env, capture_output=True, timeout=900,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        output = getattr(error, "stderr", b"") or b""
        pytest.skip(f"installing {' '.join(packages)} failed: {output.decode(errors='replace')[-500:]}")
    still = [p for p in programs if _which(p) is None]
    if still:
        pytest.skip(f"{', '.join(still)} still missing after installing {' '.join(packages)}")


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited ({process.returncode}): {log.read_text(errors='replace')[-2000:]}"
            )
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not listening on {port}: {log.read_text(errors='replace')[-2000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The server and the children it forked (its own session, started here)."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class SftpServer:
    port: int
    root: Path  # the folder mounts point at
    username: str
    private_key: str


@contextmanager
def sftp_server(base: Path) -> Iterator[SftpServer]:
    """OpenSSH's sshd with key login for the current user and the internal SFTP server."""
    ensure_installed("sshd")
    base.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True)
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation folder
    port = free_port()
    config = base / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\n"
    )
    root = base / "files"
    root.mkdir()
    log = base / "sshd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_which("sshd") or "sshd", "-D", "-e", "-f", str(config)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        _wait_port(port, process, log)
        import getpass

        yield SftpServer(port, root, getpass.getuser(), (base / "client_key").read_text())
    finally:
        _stop(process)


@dataclass
class SmbServer:
    port: int
    share: str
    root: Path
    username: str
    password: str


@contextmanager
def smb_server(base: Path) -> Iterator[SmbServer]:
    """Samba's smbd serving one share, with a user of its own password database."""
    ensure_installed("smbd")
    import getpass

    base.mkdir(parents=True, exist_ok=True)
    for name in ("private", "lock", "state", "cache", "pid", "ncalrpc", "share"):
        (base / name).mkdir()
    port = free_port()
    config = base / "smb.conf"
    config.write_text(
        "[global]\n  server role = standalone server\n"
        f"  smb ports = {port}\n  interfaces = lo\n  bind interfaces only = yes\n  disable netbios = yes\n"
        + "".join(
            f"  {key} = {base}/{name}\n"
            for key, name in (
                ("private dir", "private"),
                ("lock directory", "lock"),
                ("state directory", "state"),
                ("cache directory", "cache"),
                ("pid directory", "pid"),
                ("ncalrpc dir", "ncalrpc"),
            )
        )  # fmt: skip
        + f"  log file = {base}/log.%m\n  passdb backend = tdbsam:{base}/private/passdb.tdb\n"
        "  map to guest = never\n  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n"
        "  disable spoolss = yes\n  server min protocol = SMB2_10\n"
        f"[data]\n  path = {base}/share\n  read only = no\n"
    )
    user, password = getpass.getuser(), "Smb-Test-Pass-1"
    subprocess.run(
        [_which("smbpasswd") or "smbpasswd", "-c", str(config), "-a", "-s", user],
        input=f"{password}\n{password}\n".encode(), check=True, capture_output=True,
    )  # fmt: skip
    log = base / "smbd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_which("smbd") or "smbd", "--foreground", "--no-process-group", "-s", str(config)],
            stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_port(port, process, log)
        yield SmbServer(port, "data", base / "share", user, password)
    finally:
        _stop(process)
