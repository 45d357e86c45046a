"""Top-5 classes and attention maps from a checkout: `vit_jax/cli/predict.py`,
installed as `vit-jax-predict` (`python predict.py --help`)."""
from vit_jax.cli.predict import run

if __name__ == '__main__':
  run()
