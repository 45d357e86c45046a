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


# ImageNet-1k as big_vision's recipes read it (vit_s16_i1k.py, vit_i1k.py): the
# first 99% of `train` to train on; the held-out 1% (`minival`), `validation`,
# ReaL's labels of it and ImageNet-v2 to evaluate on.
I1K_TRAIN = 'tfds:imagenet2012:train[:99%]'
I1K_VALIDATION = 'tfds:imagenet2012:validation'
I1K_EVALS = {'minival': 'tfds:imagenet2012:train[99%:]',
             'real': 'tfds:imagenet2012_real:validation',
             'v2': 'tfds:imagenet_v2:test'}
# big_vision's plain ViT (models/vit.py) as model config fields: tanh GELU,
# position embeddings added before the class token, a tanh pre-logits layer
# of the width (rep_size=True), a zero-initialised head, no dropout, and its
# eval preprocessing (`vit_jax.models.registry.big_vision_eval`, spelled out
# here so that a config loads without JAX: resize_small(256) |
# central_crop(224) | value_range(-1, 1)).
BIG_VISION_VIT = dict(gelu_approximate=True, posemb_class_token=False,
                      representation_size=True, head_zeroinit=True, dropout_rate=0.0,
                      drop_path_rate=0.0, crop_pct=224 / 256, crop_mode='big_vision',
                      interpolation='area', mean=(0.5,) * 3, std=(0.5,) * 3)


def big_vision_i1k(c: ml_collections.ConfigDict) -> None:
  """The training both of big_vision's ImageNet-1k recipes share: Adam (0.9,
  0.999, 1e-8, first moment in bfloat16), lr 1e-3 (no batch scaling), 10k
  linear warm-up steps then cosine to 0, clipping at 1.0, weight decay 1e-4
  on kernels in big_vision's unit (times the schedule, not the lr), inception
  crop of 5-100% of the area and a flip, its data splits and evaluations."""
  c.dataset = I1K_TRAIN
  c.eval_dataset = I1K_VALIDATION
  c.evals = dict(I1K_EVALS)
  c.image_size = 224
  c.total_steps = 0               # from total_epochs
  c.optimizer = 'adamw'
  c.adam_b1, c.adam_b2, c.adam_eps = 0.9, 0.999, 1e-8
  c.adam_mu_dtype = 'bfloat16'    # config.optax = dict(mu_dtype='bfloat16')
  c.lr = 1e-3
  c.weight_decay = 1e-4           # config.wd
  c.weight_decay_style = 'big_vision'
  c.warmup_steps = 10_000
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  c.crop_scale = (0.05, 1.0)      # decode_jpeg_and_inception_crop's area_min=5
  c.flip = True
  c.seed = 0
  c.log_every = 50                # log_training_steps
  c.checkpoint_every = 1000       # ckpt_steps
  c.eval_every = 2500             # the evals' log_steps


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.model = 'vit_base_patch16_224'
  c.model_overrides = {}          # model config fields: num_classes, dropout_rate, ...
  c.dataset = 'tfds:imagenet2012:train'
  c.eval_dataset = 'tfds:imagenet2012:validation'   # '' for none
  c.evals = {}                    # more: {NAME: DATASET}, logged as NAME/top1, NAME/top5
  c.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.image_size = 224
  c.batch_size = 4096             # global, over all devices of all hosts
  c.eval_batch_size = 512
  c.total_steps = 10_000          # the run's length; 0 with total_epochs set
  # or epochs of `dataset` (total_steps = round(epochs x its size / batch_size), as
  # big_vision's total_epochs); 0: total_steps counts
  c.total_epochs = 0.0
  c.warmup_steps = 500
  c.optimizer = 'sgd'             # or 'adamw'
  c.lr = 0.03
  c.momentum = 0.9
  c.weight_decay = 0.0            # decoupled, kernels only; its unit: weight_decay_style
  c.grad_clip_norm = 1.0
  c.label_smoothing = 0.0
  c.loss = 'softmax_xent'         # or 'sigmoid_xent' (big_vision's, a sigmoid per class)
  c.accum_steps = 1
  c.dtype = 'float32'             # compute dtype; parameters stay float32
  c.pretrained = ml_collections.FieldReference(None, field_type=str)
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.eval_every = 1000
  c.log_every = 50
  c.seed = 0
  c.crop_scale = (0.08, 1.0)      # inception crop area range (big_vision: (0.05, 1.0))
  c.flip = True
  # Augmentation of from-scratch recipes (docs/train.md, "RandAugment, Mixup and CutMix"):
  c.randaug = ()                  # (N, M): big_vision's RandAugment, N ops at magnitude M
  #                                 after the crop and flip, e.g. (2, 10); () for none
  c.mixup = 0.0                   # a of Mixup's Beta(a, a), big_vision's (mixup.p); 0: none
  c.cutmix = 0.0                  # a of CutMix's Beta(a, a), timm's (cutmix_alpha); 0: none
  c.mix_switch_prob = 0.5         # with both: the fraction of steps that use CutMix (timm)
  c.mix_prob = 1.0                # the fraction of steps that mix at all (timm's mixup_prob)
  # Adam (optimizer='adamw') and the unit of weight_decay (vit_jax/train/optim.py):
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.adam_mu_dtype = 'float32'     # the first moment's dtype; big_vision keeps it in 'bfloat16'
  c.weight_decay_style = 'adamw'  # 'adamw': w -= lr(t) * wd * w; 'big_vision': w -= lr(t) /
  #                                 lr * wd * w (its wd 1e-4 at lr 1e-3 = adamw's 0.1)
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
