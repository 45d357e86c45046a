"""The launcher (`vit-jax-launch`, `python -m vit_jax.launch`): runs a
command on every worker of a TPU slice or a list of hosts, watches it and
runs it again after a restartable end. It imports nothing of training (nor
JAX): it runs on any machine with ssh or gcloud."""
