"""Top-1 / top-5 evaluation from a checkout: `vit_jax/cli/eval.py`, installed as
`vit-jax-eval` (`python eval.py --help`)."""
from vit_jax.cli.eval import run

if __name__ == '__main__':
  run()
