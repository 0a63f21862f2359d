"""Mounted storages (local folder, SFTP, SMB2/3): list, stat and read files, confined to the mount.

No kernel mount and no root: SFTP through paramiko, SMB through smbprotocol's `smbclient`. Every path a
caller gives is relative to the mount (or starts with the mount point) and is refused when it leaves
it: `..`, absolute paths elsewhere, and symlinks whose target is outside the mount.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# names writers use while a file is still being written; never picked up
TEMP_SUFFIXES = (
    ".tmp",
    ".temp",
    ".part",
    ".partial",
    ".crdownload",
    ".filepart",
    ".swp",
    ".lock",
    ".download",
)
TEMP_PREFIXES = (".", "~", "_tmp", "~$")


class StorageError(RuntimeError):
    """A storage that cannot be reached or a path it refuses; `reason` is a short machine word."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class PathRefused(StorageError):
    def __init__(self, message: str) -> None:
        super().__init__("path_outside_mount", message)


class MountConfig(BaseModel):
    """Where a mount points; credentials are kept apart (encrypted at rest, never returned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    storage_type: Literal["local", "sftp", "smb"]
    path: str = Field(
        default="", max_length=1024, description="local: the folder; sftp/smb: folder on the server"
    )
    host: str | None = Field(default=None, max_length=253, pattern=r"^[A-Za-z0-9._:-]+$")
    port: int | None = Field(default=None, ge=1, le=65535)
    share_name: str | None = Field(default=None, max_length=80, pattern=r"^[^\\/\x00:*?\"<>|]+$")
    username: str | None = Field(default=None, max_length=128)
    password: SecretStr | None = None
    private_key: SecretStr | None = None
    connect_timeout: float = Field(default=8.0, gt=0, le=60)


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the mount, posix separators
    size: int
    mtime: float


def is_temp_name(name: str) -> bool:
    lower = name.lower()
    return lower.startswith(TEMP_PREFIXES) or lower.endswith(TEMP_SUFFIXES)


def normalize_relative(path: str, mount_point: str | None = None) -> str:
    """`path` as a clean posix path relative to the mount, or PathRefused.

    An absolute path must start with the mount point (the name the mount was given); `..` is refused
    anywhere, even where it would stay inside, so a path means one thing only.
    """
    raw = (path or "").replace("\\", "/")
    if "\x00" in raw:
        raise PathRefused("path contains a NUL byte")
    if raw.startswith("/"):
        point = "/" + (mount_point or "").strip("/")
        if mount_point and (raw == point or raw.startswith(point.rstrip("/") + "/")):
            raw = raw[len(point) :]
        elif not mount_point or point != "/":
            raise PathRefused(f"{path!r} is outside the mount {mount_point or ''!r}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"{path!r} uses '..': paths stay inside the mount")
    return "/".join(parts)


def matches(relative: str, pattern: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern)


class Storage(Protocol):
    def available_space_gb(self) -> float: ...
    def list_files(self, folder: str, pattern: str, recursive: bool) -> list[FileEntry]: ...
    def stat(self, path: str) -> FileEntry: ...
    def open(self, path: str) -> Any: ...  # a context manager yielding a binary file
    def local_path(self, path: str) -> Path | None: ...
    def close(self) -> None: ...


def _walk_filter(entries: Iterator[FileEntry], pattern: str) -> list[FileEntry]:
    return sorted(
        (e for e in entries if not is_temp_name(e.path.rsplit("/", 1)[-1]) and matches(e.path, pattern)),
        key=lambda e: e.path,
    )


class LocalStorage:
    """A folder on this machine (inside the configured file roots)."""

    def __init__(self, config: MountConfig, roots: list[Path] | None = None) -> None:
        root = Path(config.path).expanduser()
        if not root.is_absolute():
            raise StorageError("path", "a local mount needs an absolute path")
        self.root = root.resolve()
        if roots is not None and not any(self.root == r or r in self.root.parents for r in roots):
            raise StorageError(
                "path_outside_roots", "the folder is outside the configured file roots (AETL_FILE_ROOTS)"
            )
        if not self.root.is_dir():
            raise StorageError("not_found", f"{config.path} is not a folder on this machine")

    def _real(self, relative: str) -> Path:
        real = (self.root / relative).resolve()
        if real != self.root and self.root not in real.parents:
            raise PathRefused(f"{relative!r} leaves the mount through a symlink")
        return real

    def available_space_gb(self) -> float:
        return round(shutil.disk_usage(self.root).free / 1024**3, 2)

    def list_files(self, folder: str, pattern: str, recursive: bool) -> list[FileEntry]:
        base = self._real(folder)
        if not base.is_dir():
            return []

        def entries() -> Iterator[FileEntry]:
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if not is_temp_name(d)) if recursive else []
                for name in filenames:
                    full = Path(dirpath) / name
                    try:
                        real = self._real(str(full.relative_to(self.root)))
                        info = real.stat()
                    except (PathRefused, OSError):
                        continue  # links out of the mount and vanished files are not listed
                    if stat.S_ISREG(info.st_mode):
                        yield FileEntry(
                            str(full.relative_to(self.root).as_posix()), info.st_size, info.st_mtime
                        )

        return _walk_filter(entries(), pattern)

    def stat(self, path: str) -> FileEntry:
        real = self._real(path)
        try:
            info = real.stat()
        except FileNotFoundError:
            raise StorageError("not_found", f"{path} does not exist in the mount") from None
        if not stat.S_ISREG(info.st_mode):
            raise StorageError("not_a_file", f"{path} is not a file")
        return FileEntry(path, info.st_size, info.st_mtime)

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        with self._real(path).open("rb") as handle:
            yield handle

    def local_path(self, path: str) -> Path | None:
        return self._real(path)

    def close(self) -> None:
        return None


class SftpStorage:
    """A folder on an SSH server, over SFTP (paramiko)."""

    def __init__(self, config: MountConfig) -> None:
        import paramiko  # type: ignore[import-untyped]

        if not config.host or not config.username:
            raise StorageError("config", "an sftp mount needs host and credentials.username")
        self._client = paramiko.SSHClient()
        # first contact trusts the host key; the stored mount is what was checked at mount time
        self._client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        key = _private_key(config.private_key.get_secret_value()) if config.private_key is not None else None
        try:
            self._client.connect(
                config.host,
                port=config.port or 22,
                username=config.username,
                password=config.password.get_secret_value() if config.password else None,
                pkey=key,
                timeout=config.connect_timeout,
                banner_timeout=config.connect_timeout,
                auth_timeout=config.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            self._sftp = self._client.open_sftp()
            home = self._sftp.normalize(".")
            wanted = config.path or home
            self.root = self._sftp.normalize(
                wanted if wanted.startswith("/") else posixpath.join(home, wanted)
            )
            if not stat.S_ISDIR(self._sftp.stat(self.root).st_mode or 0):
                raise StorageError("not_found", f"{config.path} is not a folder on the server")
        except paramiko.AuthenticationException:
            self._client.close()
            raise StorageError("auth", "the SFTP server refused the credentials") from None
        except (OSError, paramiko.SSHException) as error:
            self._client.close()
            if isinstance(error, FileNotFoundError):
                raise StorageError("not_found", f"{config.path} does not exist on the server") from None
            raise StorageError(
                "unreachable", f"cannot reach the SFTP server: {type(error).__name__}: {error}"[:300]
            ) from None

    def _real(self, relative: str) -> str:
        full = posixpath.join(self.root, relative) if relative else self.root
        try:
            real = self._sftp.normalize(full)  # the server resolves symlinks (realpath)
        except FileNotFoundError:
            real = posixpath.normpath(full)
        if real != self.root and not real.startswith(self.root.rstrip("/") + "/"):
            raise PathRefused(f"{relative!r} leaves the mount through a symlink")
        return real

    def available_space_gb(self) -> float:
        return _sftp_free_gb(self._sftp, self.root)

    def list_files(self, folder: str, pattern: str, recursive: bool) -> list[FileEntry]:
        base = self._real(folder)

        def walk(directory: str) -> Iterator[FileEntry]:
            try:
                listing = self._sftp.listdir_attr(directory)
            except OSError:
                return
            for attr in sorted(listing, key=lambda a: a.filename):
                full = posixpath.join(directory, attr.filename)
                relative = posixpath.relpath(full, self.root)
                mode = attr.st_mode or 0
                if stat.S_ISLNK(mode):
                    try:
                        real = self._real(relative)
                        attr = self._sftp.stat(real)
                        mode = attr.st_mode or 0
                    except (PathRefused, OSError):
                        continue
                if stat.S_ISDIR(mode):
                    if recursive and not is_temp_name(attr.filename or posixpath.basename(full)):
                        yield from walk(full)
                elif stat.S_ISREG(mode):
                    yield FileEntry(relative, int(attr.st_size or 0), float(attr.st_mtime or 0))

        return _walk_filter(walk(base), pattern)

    def stat(self, path: str) -> FileEntry:
        try:
            attr = self._sftp.stat(self._real(path))
        except FileNotFoundError:
            raise StorageError("not_found", f"{path} does not exist in the mount") from None
        if not stat.S_ISREG(attr.st_mode or 0):
            raise StorageError("not_a_file", f"{path} is not a file")
        return FileEntry(path, int(attr.st_size or 0), float(attr.st_mtime or 0))

    @contextmanager
    def open(self, path: str) -> Iterator[Any]:
        handle = self._sftp.open(self._real(path), "rb")
        handle.prefetch()
        try:
            yield handle
        finally:
            handle.close()

    def local_path(self, path: str) -> Path | None:
        return None

    def close(self) -> None:
        self._client.close()


def _private_key(text: str) -> Any:
    import io

    import paramiko  # type: ignore[import-untyped]

    for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return kind.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise StorageError("config", "credentials.private_key is not an unencrypted Ed25519, ECDSA or RSA key")


def _sftp_free_gb(sftp: Any, root: str) -> float:
    """Free space from OpenSSH's statvfs extension (the SFTP protocol itself has no such call)."""
    import struct

    try:
        from paramiko.sftp import CMD_EXTENDED  # type: ignore[import-untyped]

        message = sftp._request(CMD_EXTENDED, "statvfs@openssh.com", root)[1]
        values = struct.unpack(">11Q", message.get_remainder()[:88])
        frsize, bavail = values[1], values[4]
        return round(frsize * bavail / 1024**3, 2)
    except Exception:  # noqa: BLE001 - a server without the extension: space unknown
        return -1.0


class SmbStorage:
    """A folder of an SMB2/3 share (smbprotocol), no kernel mount."""

    def __init__(self, config: MountConfig) -> None:
        import smbclient
        from smbprotocol.exceptions import LogonFailure, SMBAuthenticationError, SMBException, SMBOSError

        if not config.host or not config.share_name:
            raise StorageError("config", "an smb mount needs host and share_name")
        self._smbclient = smbclient
        self._host = config.host
        self._port = config.port or 445
        self._username = config.username
        self._password = config.password.get_secret_value() if config.password else None
        self.root = f"\\\\{config.host}\\{config.share_name}" + (
            "\\" + config.path.strip("/\\").replace("/", "\\") if config.path.strip("/\\") else ""
        )
        try:
            smbclient.register_session(
                config.host,
                username=config.username,
                password=self._password,
                port=self._port,
                connection_timeout=int(config.connect_timeout),
            )
            info = smbclient.stat(self.root, **self._kw())
            if not stat.S_ISDIR(info.st_mode):
                raise StorageError("not_found", f"{config.path or config.share_name} is not a folder")
        except (SMBAuthenticationError, LogonFailure):
            raise StorageError("auth", "the SMB server refused the credentials") from None
        except SMBOSError as error:
            raise StorageError(
                "not_found", f"the share or folder is not there: {error.strerror}"[:300]
            ) from None
        except (SMBException, OSError, ValueError) as error:
            raise StorageError(
                "unreachable", f"cannot reach the SMB server: {type(error).__name__}: {error}"[:300]
            ) from None

    def _kw(self) -> dict[str, Any]:
        return {"username": self._username, "password": self._password, "port": self._port}

    def _full(self, relative: str) -> str:
        return self.root + ("\\" + relative.replace("/", "\\") if relative else "")

    def available_space_gb(self) -> float:
        try:
            info = self._smbclient.stat_volume(self.root, **self._kw())
            return round(info.caller_available_size / 1024**3, 2)
        except Exception:  # noqa: BLE001
            return -1.0

    def list_files(self, folder: str, pattern: str, recursive: bool) -> list[FileEntry]:
        def walk(relative: str) -> Iterator[FileEntry]:
            try:
                entries = list(self._smbclient.scandir(self._full(relative), **self._kw()))
            except OSError:
                return
            for entry in sorted(entries, key=lambda e: e.name):
                child = f"{relative}/{entry.name}" if relative else entry.name
                if entry.is_symlink():
                    continue  # reparse points may lead anywhere on the server: never followed
                if entry.is_dir():
                    if recursive and not is_temp_name(entry.name):
                        yield from walk(child)
                elif entry.is_file():
                    info = self._smbclient.stat(self._full(child), **self._kw())
                    yield FileEntry(child, int(info.st_size), float(info.st_mtime))

        return _walk_filter(walk(folder), pattern)

    def stat(self, path: str) -> FileEntry:
        try:
            info = self._smbclient.stat(self._full(path), **self._kw())
        except OSError:
            raise StorageError("not_found", f"{path} does not exist in the mount") from None
        if stat.S_ISLNK(info.st_mode):
            raise PathRefused(f"{path!r} is a link: links are not followed on SMB mounts")
        if not stat.S_ISREG(info.st_mode):
            raise StorageError("not_a_file", f"{path} is not a file")
        return FileEntry(path, int(info.st_size), float(info.st_mtime))

    @contextmanager
    def open(self, path: str) -> Iterator[Any]:
        self.stat(path)
        with self._smbclient.open_file(self._full(path), mode="rb", **self._kw()) as handle:
            yield handle

    def local_path(self, path: str) -> Path | None:
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._smbclient.delete_session(self._host, port=self._port)


def open_storage(config: MountConfig, roots: list[Path] | None = None) -> Storage:
    """Connect to the storage (raises StorageError with a clear reason when it cannot)."""
    if config.storage_type == "local":
        return LocalStorage(config, roots)
    if config.storage_type == "sftp":
        return SftpStorage(config)
    return SmbStorage(config)


@contextmanager
def connected(config: MountConfig, roots: list[Path] | None = None) -> Iterator[Storage]:
    storage = open_storage(config, roots)
    try:
        yield storage
    finally:
        storage.close()
