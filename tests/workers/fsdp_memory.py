"""Per-device bytes of a ViT training state (params + SGD momentum), as XLA's
memory analysis reports them, replicated and FSDP-sharded over 8 devices.

Run in its own process (the simulated device count must be set before jax
is imported): python fsdp_memory.py MODEL -> prints 'fsdp=N bytes=B' lines.
"""
import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=8'
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import vit_jax  # noqa: E402
from vit_jax import parallel  # noqa: E402


def main(name: str) -> None:
  cfg = vit_jax.get_model_config(name)
  model = vit_jax.create_model(name)
  tx = optax.sgd(0.1, momentum=0.9)
  x = jax.ShapeDtypeStruct((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
  params = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x)['params'], x)
  state = {'params': params, 'opt': jax.eval_shape(tx.init, params)}
  for fsdp in (1, 8):
    mesh = parallel.make_mesh(fsdp=fsdp)
    shardings = parallel.param_shardings(mesh, state)
    make = jax.jit(lambda: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state),
                   out_shardings=shardings)
    stats = make.lower().compile().memory_analysis()
    print(f'fsdp={fsdp} bytes={stats.output_size_in_bytes}', flush=True)


if __name__ == '__main__':
  main(sys.argv[1])
