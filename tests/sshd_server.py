"""A real OpenSSH server on 127.0.0.1 with throw-away keys, for the tests that bench over ssh.

Shared by tests/test_bench.py and tests/test_device_pi.py (a helper module, not a test file). The user's
~/.ssh is never read: clients get ``ssh_config`` (own known_hosts and identity) via ``--ssh-config``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


class SshdUnavailable(RuntimeError):
    """No OpenSSH here, or it would not start: the caller skips with this reason."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class SshdServer:
    port: int
    dir: Path
    user: str
    proc: subprocess.Popen

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def as_dict(self) -> dict:
        return {"port": self.port, "dir": self.dir, "user": self.user}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_sshd(d: Path) -> SshdServer:
    """sshd -D on a free port of 127.0.0.1 for the current user; keys and configs in ``d``."""
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        raise SshdUnavailable("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        Path("/run/sshd").mkdir(mode=0o755, parents=True)  # sshd's privilege-separation directory
    keygen(d / "host_key")
    keygen(d / "user_key")
    shutil.copy(d / "user_key.pub", d / "authorized_keys")
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 30:30:60\nMaxSessions 30\n"
    )
    host_pub = " ".join((d / "host_key.pub").read_text().split()[:2])
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (d / "empty_known_hosts").write_text("")
    common = (
        f"  GlobalKnownHostsFile /dev/null\n  IdentityFile {d / 'user_key'}\n  IdentitiesOnly yes\n  LogLevel ERROR\n"
    )
    (d / "ssh_config").write_text(f"Host *\n  UserKnownHostsFile {d / 'known_hosts'}\n{common}")
    (d / "ssh_config_unknown").write_text(f"Host *\n  UserKnownHostsFile {d / 'empty_known_hosts'}\n{common}")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    for _ in range(100):  # readiness, not a timing assertion
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-300:] if proc.stderr else ""
            raise SshdUnavailable(f"sshd did not start: {err}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return SshdServer(port, d, getpass.getuser(), proc)
