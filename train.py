"""Training and fine-tuning from a checkout: `vit_jax/cli/train.py`, installed as
`vit-jax-train` (`python train.py --help`)."""
from vit_jax.cli.train import run

if __name__ == '__main__':
  run()
