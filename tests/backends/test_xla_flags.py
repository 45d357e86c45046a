"""The training XLA flags: added once, a user's own value kept, read by XLA."""
import os
import subprocess
import sys

from vit_jax.backends.cpu import xla_flags

FLAG = '--xla_cpu_enable_concurrency_optimized_scheduler'


def test_flags_are_appended_once_and_a_users_setting_wins():
  assert xla_flags.with_training_flags('') == f'{FLAG}=false'
  ours = xla_flags.with_training_flags('--xla_force_host_platform_device_count=4')
  assert ours == f'--xla_force_host_platform_device_count=4 {FLAG}=false'
  assert xla_flags.with_training_flags(ours) == ours
  assert xla_flags.with_training_flags(f'{FLAG}=true') == f'{FLAG}=true'


def test_xla_accepts_the_flags_after_jax_is_imported():
  """XLA aborts on an unknown flag: a computation after set_training_flags
  proves the flags exist in this jaxlib and are read at backend start."""
  code = ('import jax, jax.numpy as jnp, os\n'
          'from vit_jax.backends.cpu import xla_flags\n'
          'xla_flags.set_training_flags()\n'
          'total = jax.jit(lambda a: (a @ a).sum())(jnp.ones((4, 4)))\n'
          'print(float(total), os.environ["XLA_FLAGS"])\n')
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                       timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ['64.0', f'{FLAG}=false']
