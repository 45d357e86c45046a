"""`python -m convert` in a checkout: `vit_jax/cli/convert.py`, installed as
`vit-jax-convert`."""
from vit_jax.cli.convert import run

run()
