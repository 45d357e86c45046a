"""The bash scripts the launcher runs on each worker (through ssh or gcloud).

A worker keeps the job in one directory, JOB = REMOTE_DIR/NAME: the copy of
the code (`code/`), and per worker I `worker-I.log` (every attempt's output,
appended), `worker-I.pid` (the process group of the running attempt) and
`worker-I.exit` (its exit code, once it has ended). The run is started
detached (`setsid nohup`): it survives the ssh session that started it, and
the launcher watches it with another one, which it can lose and open again.
Only bash and coreutils are needed on the worker.
"""
from __future__ import annotations

import shlex
from typing import Mapping, Sequence

# Stale users of a TPU: a process still holding its device files keeps the
# next run off it (JAX then falls back to the CPU), and so does libtpu's lock
# file left by a killed process (MaxText clears both the same way).
TPU_DEVICES = ('/dev/accel*', '/dev/vfio/[0-9]*')
LIBTPU_LOCKFILE = '/tmp/libtpu_lockfile'
EXIT_MARK = '@@vit-jax-launch: exit '  # what `watch` says on stderr when the run has ended


def path(text: str) -> str:
  """A remote path for bash: `~/x` is under the worker's $HOME."""
  if text == '~':
    return '"$HOME"'
  if text.startswith('~/'):
    return '"$HOME"/' + shlex.quote(text[2:])
  return shlex.quote(text)


def job_dir(remote_dir: str, name: str) -> str:
  return path(f'{remote_dir.rstrip("/")}/{name}')


def _sudo() -> str:
  """`$SUDO`: sudo without a password where not root and allowed (TPU VMs)."""
  return ('SUDO=; if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi')


def prepare(job: str, cwd: str, tpu: bool) -> str:
  """Before each attempt: the job directory, the command's directory checked,
  an earlier attempt of this job still running stopped, and on a TPU VM the
  TPU cleared of stale processes and its stale lock (not on other hosts: a
  GPU host's /dev/vfio may be a virtual machine's)."""
  return f'''set -u
JOB={job}
mkdir -p "$JOB" || exit 1
cd {cwd} 2>/dev/null || {{ echo "directory {cwd} does not exist on $(hostname)" >&2; exit 2; }}
{_sudo()}
for f in "$JOB"/worker-*.pid; do
  [ -s "$f" ] || continue
  g=$(cat "$f")
  if kill -0 -- "-$g" 2>/dev/null; then
    echo "$(hostname): stopping an earlier attempt still running (process group $g)"
    kill -KILL -- "-$g" 2>/dev/null
  fi
  rm -f "$f"
done
{_clear_tpu() if tpu else ''}exit 0
'''


def _clear_tpu(devices: Sequence[str] = TPU_DEVICES, lockfile: str = LIBTPU_LOCKFILE) -> str:
  globs = ' -o '.join(f'-lname {shlex.quote(d)}' for d in devices)
  return f'''holders=$($SUDO find /proc/[0-9]*/fd -maxdepth 1 \\( {globs} \\) 2>/dev/null \\
  | cut -d/ -f3 | sort -u)
for p in $holders; do
  [ "$p" = "$$" ] && continue
  what=$(tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null)
  echo "$(hostname): killing process $p, which holds the TPU: $what"
  $SUDO kill -KILL "$p" 2>/dev/null
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
done
if [ -e {shlex.quote(lockfile)} ]; then
  echo "$(hostname): removing the stale {lockfile}"
  $SUDO rm -f {shlex.quote(lockfile)}
fi
'''


def start(job: str, worker: int, attempt: int, cwd: str, env: Mapping[str, str],
          command: Sequence[str]) -> str:
  """Start the attempt detached; prints the log's size before it (where the
  attempt's output begins)."""
  exports = ''.join(f'export {k}={shlex.quote(v)}; ' for k, v in env.items())
  line = shlex.join(command)
  # the wrapper outlives a SIGTERM to its process group (a trap, which the
  # command does not inherit, unlike an ignored signal) to record the exit code
  wrapper = f'''echo $$ > "$JOB/worker-{worker}.pid"
trap : TERM INT
{exports}{line}
echo "$?" > "$JOB/worker-{worker}.exit.tmp"
mv "$JOB/worker-{worker}.exit.tmp" "$JOB/worker-{worker}.exit"
'''
  return f'''set -u
JOB={job}
LOG="$JOB/worker-{worker}.log"
cd {cwd} || exit 2
rm -f "$JOB/worker-{worker}.exit" "$JOB/worker-{worker}.pid"
stat -c %s "$LOG" 2>/dev/null || echo 0
printf '=== attempt %s on %s, %s: %s\\n' {attempt} "$(hostname)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \\
  {shlex.quote(line)} >> "$LOG"
export JOB
nohup setsid bash -c {shlex.quote(wrapper)} >> "$LOG" 2>&1 < /dev/null &
'''


def _wait_for_pid(worker: int, seconds: float) -> str:
  return (f'for i in $(seq {int(seconds * 10)}); do [ -s "$JOB/worker-{worker}.pid" ] && break; '
          f'[ -e "$JOB/worker-{worker}.exit" ] && break; sleep 0.1; done')


def watch(job: str, worker: int, offset: int) -> str:
  """The worker's log from byte `offset` on stdout as it grows, until the
  attempt ends; then EXIT_MARK and its exit code (`lost` when the attempt
  ended without one: its wrapper was killed) on stderr."""
  return f'''JOB={job}
LOG="$JOB/worker-{worker}.log"
{_wait_for_pid(worker, 30)}
pid=$(cat "$JOB/worker-{worker}.pid" 2>/dev/null)
if [ -n "$pid" ] && [ ! -e "$JOB/worker-{worker}.exit" ]; then
  tail -c +{offset + 1} --pid="$pid" -s 0.5 -F "$LOG" 2>/dev/null
else
  tail -c +{offset + 1} "$LOG" 2>/dev/null
fi
echo "{EXIT_MARK}$(cat "$JOB/worker-{worker}.exit" 2>/dev/null || echo lost)" >&2
'''


def stop(job: str, worker: int, grace_s: float) -> str:
  """SIGTERM to the attempt's process group (a run saves and exits 42),
  SIGKILL after `grace_s`."""
  return f'''JOB={job}
{_wait_for_pid(worker, 5)}
g=$(cat "$JOB/worker-{worker}.pid" 2>/dev/null) || exit 0
kill -TERM -- "-$g" 2>/dev/null || exit 0
for i in $(seq {int(grace_s * 10)}); do kill -0 -- "-$g" 2>/dev/null || exit 0; sleep 0.1; done
echo "$(hostname): worker {worker} still running {grace_s:g} s after SIGTERM: killed"
kill -KILL -- "-$g" 2>/dev/null
exit 0
'''


def status(job: str, worker: int) -> str:
  """One line: `running PID`, `exited CODE` or `not started`."""
  return f'''JOB={job}
g=$(cat "$JOB/worker-{worker}.pid" 2>/dev/null)
if [ -e "$JOB/worker-{worker}.exit" ]; then echo "exited $(cat "$JOB/worker-{worker}.exit")"
elif [ -n "$g" ] && kill -0 -- "-$g" 2>/dev/null; then echo "running $g"
elif [ -n "$g" ]; then echo "exited lost"
else echo "not started"; fi
'''


def unpack(job: str, archive: str) -> str:
  """The code's archive, copied into JOB, unpacked as JOB/code."""
  return (f'set -e\nJOB={job}\nrm -rf "$JOB/code"\nmkdir -p "$JOB/code"\n'
          f'tar -xzf "$JOB"/{shlex.quote(archive)} -C "$JOB/code"\n'
          f'rm -f "$JOB"/{shlex.quote(archive)}\n')


def install(job: str, wheel: str, python: str) -> str:
  """The wheel, copied into JOB, installed with the worker's `python`."""
  return (f'set -e\nJOB={job}\n{path(python)} -m pip install --quiet --upgrade '
          f'"$JOB"/{shlex.quote(wheel)}\n')


def make_dir(job: str) -> str:
  return f'mkdir -p {job}\n'
