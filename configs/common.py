"""Keys every training config has (DESIGN.md), with neutral defaults."""
import ml_collections


# What a v3-8 (16 GiB a core) needs to fit batch 512 in bfloat16: blocks
# rematerialised in the backward pass (`python train.py ... --compile_for=v3-8`
# reports each recipe). Micro-batches (accum_steps) fit too, but their loop
# keeps buffers of its own; the other card models fit as they are.
FIT_V3_8 = {
    'vit_large_patch16_384': dict(remat=True),
    'vit_base_resnet50_384': dict(remat=True),
}


def fit_v3_8(c: ml_collections.ConfigDict) -> None:
  """Set FIT_V3_8's settings for the config's model, if it has any."""
  fit = FIT_V3_8.get(c.model, {})
  c.accum_steps = fit.get('accum_steps', 1)
  if fit.get('remat'):
    c.model_overrides = {**c.model_overrides, 'remat': True}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = 'vit_base_patch16_224'
  c.model_overrides = {}          # model config fields: num_classes, dropout_rate, ...
  c.dataset = 'tfds:imagenet2012:train'
  c.eval_dataset = 'tfds:imagenet2012:validation'   # '' for none
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.image_size = 224
  c.batch_size = 4096             # global, over all devices of all hosts
  c.eval_batch_size = 512
  c.total_steps = 10_000
  c.warmup_steps = 500
  c.optimizer = 'sgd'             # or 'adamw'
  c.lr = 0.03
  c.momentum = 0.9
  c.weight_decay = 0.0            # decoupled, kernels only: w -= lr(t) * wd * w
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  c.accum_steps = 1
  c.dtype = 'float32'             # compute dtype; parameters stay float32
  c.pretrained = ml_collections.FieldReference(None, field_type=str)
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval_every = 1000
  c.log_every = 50
  c.seed = 0
  c.crop_scale = (0.08, 1.0)      # inception crop area range
  c.flip = True
  c.workers = 0                   # decode/augment workers per host; 0: the cores it may use
  c.worker_processes = False      # decode in processes instead of threads
  c.fsdp = 1                      # devices that shard each parameter (FSDP); 1 = replicate
  c.coordinator_address = ml_collections.FieldReference(None, field_type=str)
  c.num_processes = ml_collections.FieldReference(None, field_type=int)
  c.process_id = ml_collections.FieldReference(None, field_type=int)
  c.heartbeat_timeout_s = 100     # multi-host: a process silent this long is lost; all stop

  # --- operating a run: watchdog, profiles, compilation cache ---
  # no step done in this long: stacks to stderr, exit 42; None: automatic
  # (off on CPU, else 3 x (compile + a log interval), >= 60 s); 0: off
  c.step_timeout_s = ml_collections.FieldReference(None, field_type=float)
  c.profile_steps = ''            # 'START,COUNT': a profiler trace to DIR/tensorboard/plugins/profile
  c.profile_all_hosts = False     # profile every process, not only process 0
  c.compilation_cache = True      # JAX's persistent compilation cache in DIR/xla_cache
  return c
