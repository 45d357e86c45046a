"""A stand-in for `gcloud` in the launcher's TPU tests: each call is checked
against Google's documented syntax (`gcloud compute tpus tpu-vm ssh/scp/
describe --help`, `gcloud compute tpus queued-resources create/describe/
delete --help`) and its commands are run by local "workers".

A TPU VM worker here is a directory (STATE/nodes/NAME/worker-I) holding its
home; commands run in it with bash, HOME pointing there, and the VM's own
paths (/tmp/libtpu_lockfile, /dev/accel*, /dev/vfio/) mapped inside it. A
queued resource goes ACCEPTED -> PROVISIONING -> ACTIVE over successive
describes. `preempt(state, name)` does what a Spot preemption does: the
queued resource SUSPENDED, the VMs' processes and ssh sessions gone.
Every call is appended to STATE/calls.jsonl; a call off the documented
syntax to STATE/violations.txt (and fails as gcloud would, exit 2).

Run as `python fake_gcloud.py ARGS...` with FAKE_GCLOUD_STATE set.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys

WIDE = {'--project', '--quiet', '-q', '--format', '--verbosity', '--account',
        '--configuration', '--impersonate-service-account', '--log-http', '--user-output-enabled'}
SSH_FLAGS = {'--zone', '--worker', '--command', '--dry-run', '--force-key-file-overwrite',
             '--internal-ip', '--plain', '--ssh-flag', '--ssh-key-file',
             '--strict-host-key-checking', '--output-directory', '--ssh-key-expiration',
             '--ssh-key-expire-after'}
SCP_FLAGS = {'--zone', '--worker', '--compress', '--dry-run', '--force-key-file-overwrite',
             '--internal-ip', '--plain', '--recurse', '--scp-flag', '--ssh-key-file',
             '--strict-host-key-checking', '--ssh-key-expiration', '--ssh-key-expire-after'}
CREATE_FLAGS = {'--zone', '--runtime-version', '--accelerator-type', '--topology', '--type',
                '--node-id', '--node-count', '--node-prefix', '--async', '--data-disk',
                '--description', '--guaranteed', '--internal-ips', '--labels', '--metadata',
                '--metadata-from-file', '--network', '--range', '--reserved', '--scopes',
                '--service-account', '--shielded-secure-boot', '--spot', '--subnetwork', '--tags',
                '--valid-after-duration', '--valid-after-time', '--valid-until-duration',
                '--valid-until-time', '--reservation-host-folder',
                '--reservation-host-organization', '--reservation-host-project'}
BOOLEAN = {'--quiet', '-q', '--dry-run', '--force-key-file-overwrite', '--internal-ip', '--plain',
           '--compress', '--recurse', '--async', '--guaranteed', '--internal-ips', '--reserved',
           '--shielded-secure-boot', '--spot', '--force', '--log-http'}
HOSTS_PER_CORES = {'v4': 8, 'v5p': 8, 'v3': 8, 'v2': 8}  # TensorCores of one v2-v5p host
STATES = ('ACCEPTED', 'PROVISIONING', 'ACTIVE')


class Invalid(Exception):
  pass


def parse(args, allowed, command):
  """(positionals, {flag: value}) of a gcloud command's arguments; Invalid
  for anything its --help does not list."""
  positionals, flags = [], {}
  for i, a in enumerate(args):
    if a == '--':
      if command != 'ssh':
        raise Invalid(f'-- is not valid for {command}')
      flags['--'] = args[i + 1:]
      break
    if a.startswith('-'):
      name, eq, value = a.partition('=')
      if name not in allowed | WIDE:
        raise Invalid(f'unrecognized arguments: {a}')
      if name in BOOLEAN and eq:
        raise Invalid(f'argument {name}: ignored explicit argument {value!r}')
      if name not in BOOLEAN and not eq:
        raise Invalid(f'argument {name}: expected one argument (written as {name}=VALUE here)')
      flags[name] = value if eq else True
    else:
      positionals.append(a)
  if '--format' in flags and flags['--format'] != 'json':
    raise Invalid(f'--format={flags["--format"]}: only json here')
  return positionals, flags


def workers_of(spec, count, has_command):
  """--worker: one 0-based index; with --command also a list, range or `all`."""
  if spec in (None, True):
    spec = '0'
  if spec == 'all':
    if not has_command:
      raise Invalid('--worker=all needs --command (ssh) or is a copy to every worker (scp)')
    return list(range(count))
  if re.fullmatch(r'\d+', spec):
    chosen = [int(spec)]
  elif has_command and re.fullmatch(r'\d+(,\d+)+', spec):
    chosen = [int(x) for x in spec.split(',')]
  elif has_command and re.fullmatch(r'\d+-\d+', spec):
    a, b = (int(x) for x in spec.split('-'))
    chosen = list(range(a, b + 1))
  else:
    raise Invalid(f'--worker={spec}: not a worker index, list, range or all')
  if max(chosen) >= count:
    raise Invalid(f'--worker={spec}: the TPU has {count} workers')
  return chosen


class Cloud:
  """The stand-in's state, locked from construction to `save()` (concurrent
  calls are the rule: one ssh per worker)."""

  def __init__(self, root):
    self.root = root
    self.path = os.path.join(root, 'state.json')
    self._lock = open(os.path.join(root, 'state.lock'), 'w')
    fcntl.flock(self._lock, fcntl.LOCK_EX)
    self.state = json.load(open(self.path)) if os.path.exists(self.path) else \
        {'queued': {}, 'nodes': {}}

  def save(self):
    with open(self.path + '.tmp', 'w') as f:
      json.dump(self.state, f)
    os.replace(self.path + '.tmp', self.path)
    self._lock.close()  # the lock goes with it

  def worker_root(self, node, i):
    return os.path.join(self.root, 'nodes', node, f'worker-{i}')

  def make_node(self, name, accelerator):
    generation, cores = accelerator.rsplit('-', 1)
    count = max(1, int(cores) // HOSTS_PER_CORES.get(generation, 8))
    self.state['nodes'][name] = {'accelerator': accelerator, 'state': 'READY', 'workers': count,
                                 'sessions': []}
    for i in range(count):
      for d in ('home', 'tmp', 'dev'):
        os.makedirs(os.path.join(self.worker_root(name, i), d), exist_ok=True)

  def drop_node(self, name):
    node = self.state['nodes'].pop(name, None)
    if node:
      for i in range(node['workers']):
        kill_processes(self.worker_root(name, i))
      shutil.rmtree(os.path.join(self.root, 'nodes', name), ignore_errors=True)


def kill_processes(worker_root):
  """Every process of the worker: the process groups its runs recorded."""
  for dirpath, _, names in os.walk(worker_root):
    for name in names:
      if name.endswith('.pid'):
        try:
          os.killpg(int(open(os.path.join(dirpath, name)).read()), signal.SIGKILL)
        except (ValueError, OSError):
          pass


def preempt(root, name):
  """A Spot preemption: the queued resource SUSPENDED, the VMs gone with
  their processes and ssh sessions."""
  cloud = Cloud(root)
  cloud.state['queued'][name]['state'] = 'SUSPENDED'
  node = cloud.state['nodes'][name]
  node['state'] = 'PREEMPTED'
  for i in range(node['workers']):
    kill_processes(cloud.worker_root(name, i))
  for pid in node['sessions']:
    try:
      os.killpg(pid, signal.SIGKILL)
    except OSError:
      pass
  cloud.save()


def mapped(command, root):
  """The VM's own paths inside the worker's directory."""
  for path in ('/tmp/libtpu_lockfile', '/dev/accel', '/dev/vfio/'):
    command = command.replace(path, root + path)
  return command


def on_workers(cloud, node_name, workers, command):
  node = cloud.state['nodes'][node_name]
  procs = []
  for i in workers:
    root = cloud.worker_root(node_name, i)
    home = os.path.join(root, 'home')
    procs.append(subprocess.Popen(['bash', '-c', mapped(command, root)], cwd=home,
                                  env=dict(os.environ, HOME=home, TPU_WORKER_ID=str(i)),
                                  start_new_session=True))
  node['sessions'] += [p.pid for p in procs]  # what a preemption cuts
  cloud.save()  # and unlocked while the commands run
  codes = [p.wait() for p in procs]
  return max((c if c >= 0 else 255) for c in codes)


def node_ready(cloud, name, what):
  node = cloud.state['nodes'].get(name)
  if node is None:
    fail(what, f'NOT_FOUND: Resource projects/p/locations/z/nodes/{name} was not found', 1)
  if node['state'] != 'READY':
    fail(what, f'TPU {name} is {node["state"]}: ssh: connect to host {name}: '
         'Connection timed out', 255)
  return node


def fail(what, message, code):
  print(f'ERROR: (gcloud.compute.tpus.{what}) {message}', file=sys.stderr)
  sys.exit(code)


def main(argv):
  root = os.environ['FAKE_GCLOUD_STATE']
  with open(os.path.join(root, 'calls.jsonl'), 'a') as f:
    f.write(json.dumps(argv) + '\n')
  try:
    return run(Cloud(root), argv)
  except Invalid as e:
    with open(os.path.join(root, 'violations.txt'), 'a') as f:
      f.write(f'{argv}: {e}\n')
    print(f'ERROR: (gcloud) {e}', file=sys.stderr)
    return 2


def run(cloud, argv):
  if argv[:2] != ['compute', 'tpus'] or len(argv) < 4:
    raise Invalid(f'not a TPU command this stand-in knows: {argv[:4]}')
  group, verb, rest = argv[2], argv[3], argv[4:]
  if group == 'tpu-vm' and verb == 'ssh':
    pos, flags = parse(rest, SSH_FLAGS, 'ssh')
    if len(pos) != 1 or '--zone' not in flags or '--command' not in flags:
      raise Invalid(f'ssh takes [USER@]TPU, --zone and here --command: {rest}')
    name = pos[0].split('@')[-1]
    node = node_ready(cloud, name, 'tpu-vm.ssh')
    workers = workers_of(flags.get('--worker'), node['workers'], True)
    return on_workers(cloud, name, workers, flags['--command'])
  if group == 'tpu-vm' and verb == 'scp':
    pos, flags = parse(rest, SCP_FLAGS, 'scp')
    if len(pos) < 2 or ':' not in pos[-1] or any(':' in p for p in pos[:-1]):
      raise Invalid(f'scp here takes local SRC... and [USER@]INSTANCE:DEST: {pos}')
    name, dest = pos[-1].split('@')[-1].split(':', 1)
    node = node_ready(cloud, name, 'tpu-vm.scp')
    spec = flags.get('--worker')
    workers = list(range(node['workers'])) if spec == 'all' else workers_of(spec, node['workers'],
                                                                             False)
    for i in workers:
      home = os.path.join(cloud.worker_root(name, i), 'home')
      target = os.path.join(home, dest) if dest else home
      for src in pos[:-1]:
        shutil.copy(src, os.path.join(target, os.path.basename(src)) if target.endswith('/')
                    or os.path.isdir(target) else target)
    cloud.save()
    return 0
  if group == 'tpu-vm' and verb == 'describe':
    pos, flags = parse(rest, {'--zone'}, 'describe')
    if len(pos) != 1 or '--zone' not in flags:
      raise Invalid(f'describe takes TPU and --zone: {rest}')
    node = cloud.state['nodes'].get(pos[0])
    if node is None:
      fail('tpu-vm.describe', f'NOT_FOUND: Resource nodes/{pos[0]} was not found', 1)
    print(json.dumps({'name': f'projects/p/locations/z/nodes/{pos[0]}', 'state': node['state'],
                      'acceleratorType': node['accelerator'],
                      'networkEndpoints': [{'ipAddress': f'10.0.0.{i}', 'port': 8470}
                                           for i in range(node['workers'])]}))
    cloud.save()
    return 0
  if group == 'queued-resources':
    return queued(cloud, verb, rest)
  raise Invalid(f'unknown command compute tpus {group} {verb}')


def queued(cloud, verb, rest):
  allowed = {'create': CREATE_FLAGS, 'describe': {'--zone'}, 'delete': {'--zone', '--async',
                                                                          '--force'}}
  if verb not in allowed:
    raise Invalid(f'queued-resources {verb}: not create, describe or delete')
  pos, flags = parse(rest, allowed[verb], verb)
  if len(pos) != 1 or '--zone' not in flags:
    raise Invalid(f'queued-resources {verb} takes QUEUED_RESOURCE and --zone: {rest}')
  name, qr = pos[0], cloud.state['queued'].get(pos[0])
  if verb == 'create':
    if '--runtime-version' not in flags:
      raise Invalid('create needs --runtime-version')
    if ('--accelerator-type' in flags) == ('--topology' in flags or '--type' in flags):
      raise Invalid('create needs --accelerator-type, or --topology with --type')
    if ('--node-id' in flags) == ('--node-count' in flags):
      raise Invalid('create needs one of --node-id and --node-count')
    if qr is not None:
      fail('queued-resources.create', f'ALREADY_EXISTS: {name}', 1)
    cloud.state['queued'][name] = {'state': 'ACCEPTED', 'node': flags['--node-id'],
                                   'accelerator': flags['--accelerator-type'],
                                   'spot': '--spot' in flags, 'reserved': '--reserved' in flags}
  elif qr is None:
    fail(f'queued-resources.{verb}', f'NOT_FOUND: Resource projects/p/locations/z/'
         f'queuedResources/{name} was not found', 1)
  elif verb == 'describe':
    if qr['state'] in STATES[:-1]:  # provisioning goes on between looks
      qr['state'] = STATES[STATES.index(qr['state']) + 1]
      if qr['state'] == 'ACTIVE':
        cloud.make_node(qr['node'], qr['accelerator'])
    print(json.dumps({'name': f'projects/p/locations/z/queuedResources/{name}',
                      'state': {'state': qr['state']}}))
  else:
    if qr['node'] in cloud.state['nodes'] and '--force' not in flags:
      fail('queued-resources.delete', 'FAILED_PRECONDITION: it has nodes: use --force', 1)
    cloud.drop_node(qr['node'])
    del cloud.state['queued'][name]
  cloud.save()
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
