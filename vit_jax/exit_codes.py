"""How train.py and eval.py end, for the shell, a scheduler and the launcher
(`vit-jax-launch` reruns exactly RESUMABLE). Nothing here imports JAX."""

FINISHED = 0
CRASH = 1          # a bug: Python's own code for an uncaught exception
USER_ERROR = 2     # bad config, flag, path or data; one line says which; never retried
DOES_NOT_FIT = 3   # --compile_for: the step does not fit the slice
# stopped and resumable: SIGTERM (saved), a lost worker, a stuck step. The
# same command again resumes from the last complete checkpoint. 42 is the code
# GKE JobSet (through xpk) restarts a workload on.
RESUMABLE = 42
