"""Structured-config schemas: every composed config is validated against these dataclasses.

The YAML files under ``conf/`` hold the values (paper protocols, tuned hyperparameters); the
dataclasses here hold only types, safe defaults and the checks in ``__post_init__``. Hydra
composes in struct mode against these schemas, so an unknown key or a wrong type fails at
composition; ``OmegaConf.to_object`` then builds the real dataclasses, so the value checks run
once, before anything trains. Code below ``experiments/`` only ever sees these typed objects.

Each task owns the schema of its own knobs (``experiments/tasks/<task>.py`` defines a subclass of
:class:`TaskConfig`); :func:`register_configs` puts them all in the ConfigStore.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

PULLBACK_MODES = ("none", "reset", "pullback")
SCHEDULES = ("constant", "multistep", "cosine", "inverse_sqrt", "linear", "triangle")
SCALES = ("paper", "cpu", "smoke")
PROTOCOLS = ("paper", "val")
SLOW_BN = ("keep", "recompute", "both")
AVERAGING_KINDS = ("polyak", "ema", "swa")
WANDB_MODES = ("auto", "online", "offline", "disabled")
# torch.compile's modes (torch._inductor.list_mode_options(); "lite" left out: it falls back to
# eager kernels). The cudagraph ones capture the model's forward and backward as CUDA graphs;
# on CPU they compile as "default" (inductor skips graphs for CPU tensors).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# optim.inner: the torch.optim classes experiments/optim.py builds itself (its INNER table), and
# the timm names (timm.optim.list_optimizers(), timm 1.0) that build and take a step on CPU: each
# was tried with one step of a small conv net. Every other timm name is rejected here, before
# anything runs, with the reason in TIMM_REJECTED. Kept here, not in optim.py, so that checking a
# config never imports torch.
TORCH_INNER = ("sgd", "adam", "adamw", "radam", "adafactor")
# Schedule-Free SGD and AdamW (Defazio et al. 2024; the schedulefree package): they report their
# x sequence and replace the lr decay, so a run with one needs schedule=constant (warmup allowed).
SCHEDULE_FREE_INNER = ("sgd_schedulefree", "adamw_schedulefree")
TIMM_INNER = (
    "adabelief", "adadelta", "adafactorbv", "adafactorbvc", "adagrad", "adamax", "adamc", "adamp",
    "adamuon", "adamwlegacy", "adan", "adanw", "adopt", "adoptc", "adoptw", "cadafactor", "cadafactorbv",
    "cadafactorbvc", "cadamc", "cadamp", "cadamw", "cadan", "cadanw", "cadopt", "cadoptc", "cadoptw", "clamb",
    "clambw", "claprop", "clion", "clionc", "cmars", "cnadamc", "cnadamw", "crmsproptf", "csgdc", "csgdp",
    "csgdw", "kron", "kronc", "kronw", "lamb", "lambc", "lambcd", "lambcw", "lambw", "laprop", "lapropc",
    "larc", "lars", "lion", "lionc", "madgrad", "madgradw", "mars", "momentum", "muon", "nadam", "nadamc",
    "nadamlegacy", "nadamuon", "nadamw", "nesterov", "nesterovw", "nlarc", "nlars", "nmuon", "novograd",
    "novogradc", "novogradw", "radabelief", "radamlegacy", "radamw", "rmsprop", "rmsproptf", "rmsproptfc",
    "rmsproptfw", "sgdc", "sgdp", "sgdw",
)
TIMM_REJECTED = (  # (name prefix, why it cannot be optim.inner)
    ("adahessian", "it needs loss.backward(create_graph=True), which the training loop does not do"),
    ("bnb", "bitsandbytes optimizers need CUDA and the bitsandbytes package"),
    ("fused", "APEX fused optimizers need CUDA and NVIDIA apex"),
)


def _check_choice(what: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"Invalid {what}: {value!r}; choose one of {', '.join(map(str, choices))}")


def _check(what: str, value: Any, ok: bool, rule: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {what}: {value!r}; {rule}")


def check_inner(name: str) -> None:
    """Raise ValueError (one line, with the fix) unless ``name`` is an ``optim.inner`` the suite supports."""
    if name in TORCH_INNER or name in SCHEDULE_FREE_INNER or name in TIMM_INNER:
        return
    if name.startswith("lookahead"):
        inner = name.removeprefix("lookahead").lstrip("_") or "sgd"
        use = f"optim=lookahead_{inner}" if inner in TORCH_INNER else f"optim=lookahead_timm optim.inner={inner}"
        raise ValueError(f"Unsupported optim.inner: {name!r}; Lookahead is the optim.lookahead block, not an "
                         f"inner optimizer: use {use}")
    for prefix, why in TIMM_REJECTED:
        if name.startswith(prefix):
            raise ValueError(f"Unsupported optim.inner: {name!r}; {why}")
    close = difflib.get_close_matches(name, TORCH_INNER + SCHEDULE_FREE_INNER + TIMM_INNER, n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ValueError(f"Unknown optim.inner: {name!r}; {hint}use {', '.join(TORCH_INNER + SCHEDULE_FREE_INNER)} "
                     "or a timm name listed "
                     "in experiments/config.py TIMM_INNER (README: optim.inner)")


@dataclass
class LookaheadConfig:
    """Lookahead around the inner optimizer (Algorithm 1): k fast steps, then phi += alpha (theta - phi)."""

    k: int = 5
    alpha: float = 0.8
    pullback: str = "none"
    foreach: Optional[bool] = None
    # An alpha schedule (lookahead.alpha_power_schedule): alpha(t) = 1 - (1 - alpha_end) (t / T)^power
    # at fast step t of T, replacing ``alpha``; airbench's decaying alpha is alpha_end = 1 - 0.95^5
    # = 0.2262, power 3. None: the constant ``alpha``.
    alpha_end: Optional[float] = None
    alpha_power: float = 3.0
    # true: the model's floating buffers (BatchNorm statistics) are interpolated and reset at every
    # sync like the weights (Lookahead(..., buffers=model): the whole state dict, as airbench does).
    buffers: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"Invalid optim.lookahead.k: {self.k!r}; k must be a positive integer")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"Invalid optim.lookahead.alpha: {self.alpha!r}; alpha must lie in [0, 1]")
        _check_choice("optim.lookahead.pullback", self.pullback, PULLBACK_MODES)
        if self.alpha_end is not None:
            _check("optim.lookahead.alpha_end", self.alpha_end, 0.0 <= self.alpha_end <= 1.0, "use a number in [0, 1]")
        _check("optim.lookahead.alpha_power", self.alpha_power, self.alpha_power > 0, "must be positive")


@dataclass
class AveragingConfig:
    """An average of the iterates, evaluated in their place (``experiments/reported.py``).

    ``kind``: ``polyak`` (equal weights), ``ema`` (ema <- decay ema + (1 - decay) theta) or
    ``swa`` (equal weights over a tail whose lr anneals to ``swa_lr`` x optim.lr, Izmailov et
    al. 2018; ``experiments/schedules.py``). ``start`` is the fraction of training after which
    iterates enter the average, every ``every``-th step.
    """

    kind: str = "polyak"
    start: float = 0.0
    every: int = 1
    decay: float = 0.999  # ema
    swa_lr: float = 0.05  # swa: the tail's lr as a fraction of optim.lr
    anneal: float = 0.05  # swa: fraction of the run over which the lr anneals (cosine) to the tail's

    def __post_init__(self) -> None:
        _check_choice("optim.averaging.kind", self.kind, AVERAGING_KINDS)
        if not 0.0 <= self.start < 1.0:
            raise ValueError(f"Invalid optim.averaging.start: {self.start!r}; use a fraction in [0, 1)")
        if self.every < 1:
            raise ValueError(f"Invalid optim.averaging.every: {self.every!r}; must be >= 1")
        _check("optim.averaging.decay", self.decay, 0.0 <= self.decay < 1.0, "use a number in [0, 1)")
        _check("optim.averaging.swa_lr", self.swa_lr, self.swa_lr > 0, "must be positive (a fraction of optim.lr)")
        _check("optim.averaging.anneal", self.anneal, 0.0 <= self.anneal <= 1.0 - self.start,
               "use a fraction in [0, 1 - start]")

    @property
    def suffix(self) -> str:
        """The metric-column suffix of the averaged weights: avg (Polyak), ema, swa."""
        return "avg" if self.kind == "polyak" else self.kind


@dataclass
class OptimConfig:
    """The inner optimizer plus optional Lookahead and Polyak averaging.

    ``name`` is the config choice (``lookahead_sgd``), used to label results; ``inner`` selects
    the class: sgd, adam, adamw, radam, adafactor, or any optimizer name timm knows.
    """

    name: str = MISSING
    inner: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    extra: Dict[str, Any] = field(default_factory=dict)
    # Parameters of normalization layers (BatchNorm, LayerNorm, GroupNorm) train at lr x
    # norm_lr_scale with weight_decay / norm_lr_scale, so their per-step decay lr * wd equals every
    # other parameter's (airbench's bias_scaler: 64). 1: one group, as torch.optim builds it.
    norm_lr_scale: float = 1.0
    lookahead: Optional[LookaheadConfig] = None
    averaging: Optional[AveragingConfig] = None

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"Invalid optim.lr: {self.lr!r}; the learning rate must be positive")
        if self.weight_decay < 0:
            raise ValueError(f"Invalid optim.weight_decay: {self.weight_decay!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"Invalid optim.momentum: {self.momentum!r}; must lie in [0, 1)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"Invalid optim.betas: {self.betas!r}; give two numbers in [0, 1)")
        _check("optim.eps", self.eps, self.eps >= 0, "must be >= 0")
        _check("optim.norm_lr_scale", self.norm_lr_scale, self.norm_lr_scale > 0, "must be positive (1: no separate group)")
        check_inner(self.inner)
        if self.lookahead is not None and self.averaging is not None:
            raise ValueError("optim.lookahead and optim.averaging are exclusive; pick one")
        if self.inner in SCHEDULE_FREE_INNER and (self.lookahead is not None or self.averaging is not None):
            raise ValueError(f"optim.inner={self.inner} reports its own average (x); drop optim.lookahead and "
                             "optim.averaging")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, evaluated per optimizer step.

    ``milestones`` are fractions of the run (the paper's CIFAR 60/120/160 of 200 epochs is
    ``[0.3, 0.6, 0.8]``), so a schedule keeps its shape at every scale.
    """

    name: str = "constant"
    milestones: List[float] = field(default_factory=list)
    gamma: float = 0.1
    warmup_steps: int = 0
    decay_from: int = 0  # inverse_sqrt without warmup: the step where the 1/sqrt decay starts
    min_lr_frac: float = 0.0
    start_lr_frac: float = 0.0  # triangle: the factor at step 0
    peak_at: float = 0.5  # triangle: the fraction of the run where the factor reaches 1

    def __post_init__(self) -> None:
        _check_choice("schedule.name", self.name, SCHEDULES)
        _check("schedule.start_lr_frac", self.start_lr_frac, 0.0 <= self.start_lr_frac <= 1.0, "use a fraction in [0, 1]")
        _check("schedule.peak_at", self.peak_at, 0.0 <= self.peak_at < 1.0, "use a fraction in [0, 1)")
        if any(not 0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"Invalid schedule.milestones: {self.milestones!r}; increasing fractions in (0, 1)")
        if self.name == "multistep" and not self.milestones:
            raise ValueError("schedule.name=multistep needs schedule.milestones")
        if self.warmup_steps < 0:
            raise ValueError(f"Invalid schedule.warmup_steps: {self.warmup_steps!r}")
        _check("schedule.gamma", self.gamma, self.gamma > 0, "must be positive")
        _check("schedule.decay_from", self.decay_from, self.decay_from >= 0, "must be >= 0")
        _check("schedule.min_lr_frac", self.min_lr_frac, 0.0 <= self.min_lr_frac <= 1.0, "use a fraction in [0, 1]")


@dataclass
class PerUpdateConfig:
    """Evaluate after every optimizer step inside a window (paper Fig. 10: 60 updates at epoch 65)."""

    start_epoch: float = MISSING
    steps: int = 60
    max_batches: int = 0  # 0: the whole evaluation split
    snapshots: bool = False  # also save fast and slow weights at each step (paper Fig. 1)

    def __post_init__(self) -> None:
        _check("trainer.per_update.start_epoch", self.start_epoch, self.start_epoch >= 0, "must be >= 0")
        _check("trainer.per_update.steps", self.steps, self.steps >= 1, "must be >= 1")
        _check("trainer.per_update.max_batches", self.max_batches, self.max_batches >= 0, "must be >= 0 (0: all)")


@dataclass
class TrainerConfig:
    """The shared loop: length, evaluation, checkpoints, numerics and threads."""

    epochs: float = 1.0
    max_steps: int = 0  # > 0 stops after this many optimizer steps (smoke runs)
    log_every: int = 50
    eval_every: float = 1.0  # in epochs
    grad_clip: float = 0.0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True  # conv nets: NHWC on CUDA and CPU (tasks.base.image_layout)
    compile: bool = False
    # torch.compile(model, mode=..., backend=...) when compile=true; "reduce-overhead" replays the
    # model's forward and backward as CUDA graphs (README "On a GPU"). A backend other than
    # inductor (aot_eager, eager: tests) ignores the mode.
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    threads: int = 0  # 0: use every core
    deterministic: bool = True
    checkpoint: bool = True  # false: never write checkpoint.pt (no resume; short GPU jobs keep only records)
    checkpoint_every: int = 0  # in steps; 0: at every evaluation
    slow_bn: str = "keep"
    bn_batches: int = 50
    eval_fast: bool = True
    per_update: Optional[PerUpdateConfig] = None
    progress: bool = True
    divergence_loss: float = 1e4  # a loss above this (or non-finite) ends the run as diverged
    sync_bn: bool = False  # DDP: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only)

    def __post_init__(self) -> None:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("trainer.epochs or trainer.max_steps must be positive")
        _check_choice("trainer.slow_bn", self.slow_bn, SLOW_BN)
        _check_choice("trainer.precision", self.precision, ("auto", "fp32", "bf16"))
        _check_choice("trainer.compile_mode", self.compile_mode, COMPILE_MODES)
        _check("trainer.compile_backend", self.compile_backend, bool(self.compile_backend),
               "name a torch.compile backend (inductor, aot_eager, eager)")
        if self.threads < 0:
            raise ValueError(f"Invalid trainer.threads: {self.threads!r}")
        # Each of these would otherwise fail (or silently misbehave) only once training runs.
        _check("trainer.epochs", self.epochs, self.epochs >= 0, "must be >= 0 (0: use trainer.max_steps)")
        _check("trainer.max_steps", self.max_steps, self.max_steps >= 0, "must be >= 0 (0: no limit)")
        _check("trainer.log_every", self.log_every, self.log_every >= 1, "must be >= 1 (steps between logged rows)")
        _check("trainer.eval_every", self.eval_every, self.eval_every > 0, "must be a positive number of epochs")
        _check("trainer.grad_clip", self.grad_clip, self.grad_clip >= 0, "must be >= 0 (0: no clipping)")
        _check("trainer.checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 0,
               "must be >= 0 (0: at every evaluation)")
        _check("trainer.bn_batches", self.bn_batches, self.bn_batches >= 1, "must be >= 1")
        _check("trainer.divergence_loss", self.divergence_loss, self.divergence_loss > 0, "must be positive")


@dataclass
class DataConfig:
    """Where the dataset lies (the folder holding the official layout) and how it is batched."""

    root: str = MISSING
    batch_size: int = 128
    eval_batch_size: int = 500
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check("data.batch_size", self.batch_size, self.batch_size >= 1, "must be >= 1")
        _check("data.eval_batch_size", self.eval_batch_size, self.eval_batch_size >= 1, "must be >= 1")
        _check("data.num_workers", self.num_workers, self.num_workers >= 0, "must be >= 0")


@dataclass
class LoggerConfig:
    """CSV is always written; wandb is opt-in and offline unless the user is logged in."""

    wandb: bool = False
    project: str = "lookahead-repro"
    mode: str = "auto"  # auto: online if logged in, else offline

    def __post_init__(self) -> None:
        _check_choice("logger.mode", self.mode, WANDB_MODES)


@dataclass
class TaskConfig:
    """Fields every task has; each task subclasses this with its own knobs."""

    name: str = MISSING
    dataset: str = MISSING


@dataclass
class Config:
    task: TaskConfig = MISSING
    optim: OptimConfig = MISSING
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scale: str = "paper"
    seed: int = 0
    experiment_name: str = "single"
    resume: bool = True
    # The evaluation protocol (README "Fair comparisons"): "paper" (the paper's) trains on the whole
    # training set and reports test; "val" holds out a fixed validation split of the training set
    # where the dataset has none (CIFAR: task.val_size, task.split_seed; ImageNet: 10 per class)
    # and logs val_* beside test_*; PTB and Multi30k validate on their own validation files.
    protocol: str = "paper"
    # Fair-comparison studies (conf/tune/, scripts/study.py) label their members; a plain run
    # leaves these at their defaults. ``trial`` >= 0: a tuning trial; -1: not one (a final run).
    study: str = ""
    arm: str = ""
    trial: int = -1

    def __post_init__(self) -> None:
        _check_choice("scale", self.scale, SCALES)
        _check_choice("protocol", self.protocol, PROTOCOLS)
        if self.optim.inner in SCHEDULE_FREE_INNER and self.schedule.name != "constant":
            raise ValueError(f"optim.inner={self.optim.inner} replaces the lr schedule; add schedule.name=constant "
                             f"(got schedule.name={self.schedule.name}; schedule.warmup_steps still applies)")
        _check("trial", self.trial, self.trial >= -1, "use -1 (not a tuning trial) or a trial id >= 0")


def register_configs() -> None:
    """Register the schemas in Hydra's ConfigStore (called by run.py and the tests)."""
    from hydra.core.config_store import ConfigStore

    from experiments.tasks import TASK_SCHEMAS

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="optim", name="base_optim", node=OptimConfig)
    cs.store(group="schedule", name="base_schedule", node=ScheduleConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    for name, schema in TASK_SCHEMAS.items():
        cs.store(group="task", name=f"base_{name}", node=schema)
