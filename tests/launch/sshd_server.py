"""A real OpenSSH server on 127.0.0.1 for the launcher's tests: its own port,
host key and client key, made per test; the client reaches it through an ssh
config file with a host alias (as ~/.ssh/config would). Debian's
openssh-server is installed with apt where it is missing and this user may;
elsewhere the tests are skipped with the reason."""
import os
import shutil
import subprocess
import time

import pytest

from train_helpers import free_port

SSHD = '/usr/sbin/sshd'


def _install() -> str:
  """Why sshd cannot be had here, or '' once it is installed."""
  if os.path.exists(SSHD):
    return ''
  if os.geteuid() != 0 or not shutil.which('apt-get'):
    return 'no sshd, and installing openssh-server needs root and apt-get'
  env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
  install = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'openssh-server']
  out = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
  if out.returncode:  # stale package lists: once more after an update
    subprocess.run(['apt-get', 'update', '-q'], capture_output=True, env=env, timeout=900)
    out = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
  if out.returncode or not os.path.exists(SSHD):
    return f'installing openssh-server failed: {(out.stderr or out.stdout)[-300:]}'
  return ''


class Sshd:
  """`alias`: the host name the tests give the launcher; `config`: the ssh
  config file (`--ssh-config`) that resolves it to 127.0.0.1:port."""

  def __init__(self, directory):
    reason = _install()
    if reason:
      pytest.skip(reason)
    os.makedirs('/run/sshd', exist_ok=True)  # OpenSSH's privilege separation directory
    d = str(directory)
    os.makedirs(d, exist_ok=True)
    for name in ('host_key', 'client_key'):
      subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', f'{d}/{name}'],
                     check=True)
    shutil.copy(f'{d}/client_key.pub', f'{d}/authorized_keys')
    os.chmod(f'{d}/authorized_keys', 0o600)
    self.port = free_port()
    with open(f'{d}/sshd_config', 'w') as f:
      f.write(f'Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n'
              f'AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n'
              'PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n'
              'StrictModes no\nPermitRootLogin prohibit-password\nMaxStartups 100\n'
              'MaxSessions 100\nLogLevel ERROR\n')
    self.alias = 'worker-host'
    self.config = f'{d}/ssh_config'
    with open(self.config, 'w') as f:
      f.write(f'Host {self.alias}\n  HostName 127.0.0.1\n  Port {self.port}\n'
              f'  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n'
              f'  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  LogLevel ERROR\n')
    self.proc = subprocess.Popen([SSHD, '-D', '-e', '-f', f'{d}/sshd_config'],
                                 stderr=open(f'{d}/sshd.log', 'w'))
    for _ in range(100):
      if self.ssh('true').returncode == 0:
        return
      time.sleep(0.1)
    self.close()
    pytest.skip(f'sshd did not accept connections: {open(f"{d}/sshd.log").read()[-300:]}')

  def ssh(self, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(['ssh', '-F', self.config, '-o', 'BatchMode=yes', self.alias,
                           command], capture_output=True, text=True, timeout=30)

  def close(self) -> None:
    self.proc.terminate()
    self.proc.wait(timeout=30)
