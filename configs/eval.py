"""Evaluation config: python eval.py --config=configs/eval.py --config.model=NAME ..."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = ''                        # registry name; may be empty for our own checkpoints
  c.model_overrides = {}              # model config fields, e.g. {'num_classes': 10}
  c.checkpoint = ''                   # any path vit_jax.load_params reads
  c.dataset = 'tfds:imagenet2012:validation'   # or folder:PATH
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.class_names = ml_collections.FieldReference(None, field_type=list)
  c.workdir = ''                      # metrics.json (and logits.npz) go here
  c.batch_size = 64                   # global, over all devices of all hosts
  c.workers = 8                       # decode/resize threads per host
  c.write_logits = False
  c.strict = False                    # fail on an unreadable image instead of skipping it
  # multi-host: set all three for GPU clusters / local tests; TPU pods need none
  c.coordinator_address = ml_collections.FieldReference(None, field_type=str)
  c.num_processes = ml_collections.FieldReference(None, field_type=int)
  c.process_id = ml_collections.FieldReference(None, field_type=int)
  c.heartbeat_timeout_s = 100         # a process silent this long is lost; all stop
  return c
