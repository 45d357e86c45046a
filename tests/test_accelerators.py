"""A host's accelerators from its device files: with one (a TPU VM's
/dev/accel0, say), or a platform named already, JAX keeps its choice.
(Without either, `import vit_jax` tells JAX the CPU: tests/cli/
test_commands_anywhere.py.)"""
import os

from vit_jax import accelerators


def test_a_device_file_leaves_the_platform_to_jax(tmp_path, monkeypatch):
  (tmp_path / 'accel0').touch()
  monkeypatch.setattr(accelerators, 'DEVICE_FILES', (str(tmp_path / 'accel*'),))
  monkeypatch.delenv('JAX_PLATFORMS')
  assert accelerators.present()
  accelerators.use_cpu_without_one()
  assert 'JAX_PLATFORMS' not in os.environ


def test_a_platform_named_already_is_kept(tmp_path, monkeypatch):
  monkeypatch.setattr(accelerators, 'DEVICE_FILES', (str(tmp_path / 'accel*'),))
  assert not accelerators.present()
  monkeypatch.setenv('JAX_PLATFORMS', 'tpu')
  accelerators.use_cpu_without_one()
  assert os.environ['JAX_PLATFORMS'] == 'tpu'
