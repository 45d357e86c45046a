"""`python -m vit_jax.launch ...`: the same program as `vit-jax-launch`."""
from vit_jax.launch.cli import run

run()
