"""The one typed home for training options: defaults here, overridden by a TOML file, then by flags."""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from fmnist import textfile
from fmnist.data import SIDE
from fmnist.errors import FmnistError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MODELS = ("mlp", "cnn")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
AMPS = ("none", "bf16", "auto")
COMPILES = ("none", "default", "reduce-overhead")
AUGMENTATIONS: tuple[str, ...] = ("flip", "crop", "translate", "erase")  # fmnist.augment's kinds
MAX_STRENGTH = 3.0  # augment_strength's largest: crop keeps >= 25% of the area, erase hides <= 60%, translate <= 6 px
# An int8 export's calibration sample (fmnist.export): training images whose activation ranges set the int8
# scales, and the fewest accepted (benchmarks/fit_sample.py, docs/SERVING.md).
CALIBRATION_IMAGES = 2_000
MIN_CALIBRATION_IMAGES = 100
# Where a run trains and where its data lies, not what it computes: --resume may change these.
RUNTIME_FIELDS = ("device", "data_dir", "threads", "max_time")


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, (tuple, list)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    # model
    model: str = _opt("mlp", "architecture", MODELS)
    hidden: tuple[int, ...] = _opt(
        (512, 512), "layer widths: units per hidden layer (mlp), channels per conv block (cnn)"
    )
    activation: str = _opt("relu", "non-linearity after each hidden layer", ACTIVATIONS)
    dropout: float = _opt(0.0, "dropout probability after each hidden layer")
    batch_norm: bool = _opt(False, "batch normalisation in each hidden layer")
    convs: int = _opt(2, "cnn: 3x3 convolutions per block")
    head: int = _opt(0, "cnn: units of a fully connected layer on the flattened conv features (0: global average pool)")
    # optimisation
    epochs: int = _opt(15, "passes over the training images")
    batch_size: int = _opt(64, "images per optimizer step")
    optimizer: str = _opt("adam", "optimizer", OPTIMIZERS)
    lr: float = _opt(1e-3, "peak learning rate (after warmup, before decay)")
    momentum: float = _opt(0.0, "SGD momentum (0 = plain SGD)")
    nesterov: bool = _opt(False, "Nesterov momentum (SGD only; needs --momentum > 0)")
    betas: tuple[float, ...] = _opt((0.9, 0.999), "Adam/AdamW betas")
    weight_decay: float = _opt(0.0, "L2 penalty (sgd, adam) or decoupled decay (adamw)")
    schedule: str = _opt("cosine", "learning-rate schedule, stepped every batch", SCHEDULES)
    warmup_epochs: float = _opt(0.0, "linear warmup from 0 to --lr over this many epochs")
    step_epochs: int = _opt(5, "step schedule: multiply the lr by --gamma every this many epochs")
    gamma: float = _opt(0.1, "step schedule: lr multiplier at each step")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing")
    amp: str = _opt(
        "none",
        "training steps under bf16 autocast (fast on CPUs with AMX or AVX-512 BF16, recent GPUs); "
        "auto: bf16 only where it is native; evaluation stays fp32",
        AMPS,
    )
    tf32: bool = _opt(False, "CUDA: fp32 matmuls and convolutions on TF32 tensor cores (other numerics than fp32)")
    compile: str = _opt("none", "torch.compile the training forward (reduce-overhead: with CUDA graphs)", COMPILES)
    on_nan: str = _opt(
        "stop", "on a non-finite loss: stop (the last good checkpoint stays) or skip the batch", ("stop", "skip")
    )
    augment: tuple[str, ...] = _opt((), "batched on-device augmentations, comma-separated", AUGMENTATIONS)
    augment_strength: float = _opt(1.0, f"scales crop, translate and erase (0 to {MAX_STRENGTH:g})")
    mixup_alpha: float = _opt(
        0.0,
        "mixup (Zhang et al. 2018): each image blended with another, weight ~ Beta(alpha, "
        "alpha), labels mixed alike; 0: off; typical 0.2-1",
    )
    cutmix_alpha: float = _opt(
        0.0,
        "CutMix (Yun et al. 2019): a box of another image pasted in, label mass by area, "
        "area ~ Beta(alpha, alpha); 0: off; with mixup each image takes one of the two",
    )
    accumulate: int = _opt(
        1,
        "gradient accumulation: batches of --batch-size whose gradients add up to one optimizer "
        "step (effective batch: accumulate x batch_size)",
    )
    ema_decay: float = _opt(
        0.0,
        "EMA of the weights (timm/torchvision --model-ema): decay per optimizer step, warmed "
        "up as min(decay, 1 - (1 + step)^-2/3); evaluated beside the raw weights every epoch and "
        "chosen on validation (refused with --val-size 0); 0: off; e.g. 0.999",
    )
    patience: int = _opt(
        0,
        "early stopping: stop after this many epochs without a validation accuracy gain above "
        "--min-delta (refused with --val-size 0); 0: off",
    )
    min_delta: float = _opt(0.0, "early stopping: the smallest validation accuracy gain (a fraction) that counts")
    max_time: float = _opt(
        0.0,
        "wall-clock budget of training in seconds (the epochs with their evaluation and checkpoints, "
        "resumes included): stop at the end of the last epoch that fits (by the previous epoch's time); "
        "the schedule stays planned over --epochs. The work after training (final test, plots, the "
        "temperature and detector fit) comes on top: summary.json records wall_seconds (training) and "
        "total_seconds (the whole run); 0: none",
    )
    # data and run
    val_size: int = _opt(
        5000,
        "training images held out (stratified) for validation: the best epoch (and EMA) is chosen "
        "on them, and `fmnist train` fits the temperature and the non-garment detector on them; "
        "0: train on every image, with uncalibrated probabilities and no detector",
    )
    train_subset: int = _opt(
        0,
        "train on a stratified subset of this many of the images the validation split leaves (0 = all): "
        "smoke tests, quick studies",
    )
    init_from: str = _opt(
        "",
        "fine-tuning: start from the weights of this checkpoint or run directory (its architecture must be "
        "this config's) instead of a random initialisation; its path and SHA-256 go to the run's parent.json",
    )
    freeze: int = _opt(
        0, "fine-tuning: keep the first N weight layers (Linear or Conv2d, with their batch norm) as they start"
    )
    seed: int = _opt(0, "seeds weights, data order, augmentation and dropout")
    split_seed: int = _opt(
        -1,
        "seeds the validation split, the training subset and the detector's reference photos; -1: --seed, or for "
        "a fine-tune (--init-from, `fmnist adapt`) its parent's, so that its validation images are images the "
        "parent held out too; a value given is used as it is",
    )
    device: str = _opt("auto", "where to train: auto picks cuda, then mps, then cpu", DEVICES)
    eval_batch_size: int = _opt(1000, "images per batch when evaluating")
    test_curve: bool = _opt(
        False,
        "also evaluate the test set after every epoch, for its curve in curves.png and metrics.jsonl (reported, "
        "never used to choose; 0.5 s an epoch for the MLP on 2 CPUs); without it the test set is evaluated once, "
        "on the chosen weights, when training ends",
    )
    data_dir: str = _opt("", "directory holding the four IDX files (default: search, then download)")
    threads: str = _opt(
        "auto",
        "CPU: torch intra-op threads, or auto: the cores other processes leave free "
        "(measured over 0.1 s from /proc/stat), so that a busy core does not stall every op",
    )

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> Config:
        return from_dict({**to_dict(self), **changes})


def _choice_check(cfg: Config) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata["choices"]
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if choices and v not in choices:
                raise FmnistError(f"{f.name}: unknown value {v!r}; choose from {', '.join(choices)}")


def _validate(cfg: Config) -> None:  # noqa: C901 -- a flat list of independent checks, one per rule
    _choice_check(cfg)
    positive = ("epochs", "batch_size", "lr", "eval_batch_size", "step_epochs", "gamma", "convs", "accumulate")
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise FmnistError(f"{name} must be > 0, got {getattr(cfg, name)}")
    for name in (
        "momentum",
        "weight_decay",
        "warmup_epochs",
        "val_size",
        "train_subset",
        "head",
        "mixup_alpha",
        "cutmix_alpha",
        "patience",
        "min_delta",
        "max_time",
        "freeze",
        "seed",  # numpy's generators (the detector's reference photos) take none below 0
    ):
        if getattr(cfg, name) < 0:
            raise FmnistError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.split_seed < -1:
        raise FmnistError(f"split_seed must be >= 0, or -1 (--seed, or a fine-tune's parent's); got {cfg.split_seed}")
    if not 0 <= cfg.augment_strength <= MAX_STRENGTH:
        raise FmnistError(f"augment_strength must be in [0, {MAX_STRENGTH:g}], got {cfg.augment_strength}")
    for name in ("dropout", "label_smoothing"):
        if not 0 <= getattr(cfg, name) < 1:
            raise FmnistError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not cfg.hidden or min(cfg.hidden) < 1:
        raise FmnistError(f"hidden must list one or more positive widths, got {cfg.hidden}")
    if cfg.model == "cnn" and SIDE >> len(cfg.hidden) < 1:
        raise FmnistError(
            f"cnn: each block halves the {SIDE}-pixel side, so at most {SIDE.bit_length() - 1} blocks; "
            f"got {len(cfg.hidden)}"
        )
    if len(cfg.betas) != 2 or not all(0 <= b < 1 for b in cfg.betas):
        raise FmnistError(f"betas must be two numbers in [0, 1), got {cfg.betas}")
    if cfg.batch_norm and cfg.batch_size < 2:  # the data's size and the processes are checked by train.fit
        raise FmnistError("batch norm needs at least 2 images per batch: raise --batch-size or drop --batch-norm")
    if cfg.nesterov and (cfg.optimizer != "sgd" or cfg.momentum == 0):
        raise FmnistError("nesterov needs --optimizer sgd and --momentum > 0")
    if cfg.warmup_epochs >= cfg.epochs:
        raise FmnistError(f"warmup_epochs ({cfg.warmup_epochs}) must be less than epochs ({cfg.epochs})")
    for name in (
        "lr",
        "momentum",
        "weight_decay",
        "gamma",
        "warmup_epochs",
        "mixup_alpha",
        "cutmix_alpha",
        "min_delta",
        "max_time",
    ):
        if not math.isfinite(getattr(cfg, name)):
            raise FmnistError(f"{name} must be a finite number")
    if not 0 <= cfg.ema_decay < 1:
        raise FmnistError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    for name in ("ema_decay", "patience"):
        if getattr(cfg, name) and not cfg.val_size:
            raise FmnistError(f"{name} decides on the validation split: drop --val-size 0 (the default holds out 5000)")
    if cfg.accumulate > 1 and cfg.on_nan == "skip":
        raise FmnistError("on_nan = skip needs accumulate = 1: a skipped batch would leave a partial gradient")
    if cfg.threads != "auto" and not (cfg.threads.isdigit() and int(cfg.threads) >= 1):
        raise FmnistError(f"threads must be auto or a positive integer, got {cfg.threads!r}")


def coerce(name: str, value: Any, of: type = Config) -> Any:
    """Convert a TOML value, a command-line string or a Python API argument to the type of field `name` of the
    dataclass `of` (Config, AdaptRecipe), or raise FmnistError naming the field and the type it takes."""
    types = typing.get_type_hints(of)
    if name not in types:
        raise FmnistError(f"unknown option {name!r}; known: {', '.join(types)}")
    kind = types[name]
    try:
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v and v != "none"]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_scalar(item, v) for v in value)
        return _scalar(kind, value)
    except (TypeError, ValueError):
        raise FmnistError(f"{name}: expected {_type_name(kind)}, got {value!r}") from None


def _scalar(kind: type, value: Any) -> Any:
    boolean = isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"  # or numpy's
    if kind is bool:
        if boolean:
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError
    # A whole number only: 2.5 or numpy's float32(2.5) is not 2, and True is not 1.
    if kind is int and (boolean or (isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral))):
        raise ValueError
    if kind is float and boolean:
        raise ValueError
    if kind is str and not isinstance(value, str):
        raise ValueError
    return kind(value)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {typing.get_args(kind)[0].__name__}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]


def from_dict(values: dict[str, Any]) -> Config:
    return Config(**{k: coerce(k, v) for k, v in values.items()})


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """Config values with lists for tuples: safe for TOML, JSON and weights_only checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def to_dict(cfg: Config) -> dict[str, Any]:
    return plain(dataclasses.asdict(cfg))


def load_toml_file(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The tables of a TOML file (read by textfile.read: any BOM, CRLF); a missing, unreadable or invalid file
    is one FmnistError."""
    path = Path(path)
    try:
        return tomllib.loads(textfile.read(path, f"{what} file"))
    except tomllib.TOMLDecodeError as e:
        raise FmnistError(f"{path}: invalid TOML: {e}") from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """Training options from a TOML file, each checked against its field."""
    return checked(load_toml_file(path), path)


def checked(values: dict[str, Any], source: str | Path) -> dict[str, Any]:
    """`values` once each is known to be a valid value of its field; errors name `source`."""
    for name, value in values.items():
        try:
            coerce(name, value)
        except FmnistError as e:
            raise FmnistError(f"{source}: {e}") from None
    return values


def dumps(cfg: Config) -> str:
    return tomli_w.dumps(to_dict(cfg))


def resolve(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file, then explicit overrides (flags)."""
    values = read_toml(config_file) if config_file else {}
    return from_dict({**values, **(overrides or {})})


def for_resume(saved: Config, asked: dict[str, Any], run_dir: str | Path, flag: str = "--resume") -> Config:
    """The config a resumed run continues with: the one it `saved`, with only RUNTIME_FIELDS changed by `asked`.

    Any other value asked for that differs from the saved one is an FmnistError (naming `flag`, the way the
    run was resumed): a run means one config. A split_seed of -1 asked of a fine-tune (init_from) is the one its
    run resolved when it began (training.inherit_split), whatever that was.
    """
    runtime = {name: value for name, value in asked.items() if name in RUNTIME_FIELDS}
    for name, value in asked.items():
        resolved = name == "split_seed" and saved.init_from and coerce(name, value) == -1
        if name not in runtime and not resolved and coerce(name, value) != getattr(saved, name):
            raise FmnistError(
                f"{flag} {run_dir}: {name}={value} conflicts with the run's {name}={getattr(saved, name)}; "
                "start a new run to change it"
            )
    return saved.replace(**runtime)


def describe(name: str) -> tuple[str, tuple[str, ...] | None, Any]:
    """(help, choices, default) of a field: the CLI builds its flags from this."""
    f = {f.name: f for f in dataclasses.fields(Config)}[name]
    default = f.default_factory() if callable(f.default_factory) else f.default
    return f.metadata["help"], f.metadata["choices"], default


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


@dataclass(frozen=True)
class AdaptRecipe:
    """How `fmnist adapt` fine-tunes (fmnist.adapt.Recipe); kept here, beside Config, so that the command line
    shows its defaults without importing torch; docs/ADAPT.md measures the defaults (benchmarks/adapt.py)."""

    epochs: int = 10
    lr: float = 3e-4  # Adam's peak learning rate, cosine-decayed per step
    freeze: int = 0  # leading weight layers kept as the parent has them (models.freeze)
    repeats: int = 10  # times each training photo is seen per epoch
    rehearsal: float = 3.0  # Fashion-MNIST memory images per training photo seen
    holdout: float = 0.3  # share of each class's photos held out (classes of MIN_PHOTOS_TO_HOLD_OUT or more)
    augment: tuple[str, ...] = ()  # augment.py kinds, applied once to the photos' copies (never to the memory)
    forgetting: float = 0.005  # largest drop of Fashion-MNIST validation accuracy the chosen weights may cost
    distill: bool = True  # the memory's targets: the parent's probabilities instead of the labels
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # each field in its type (a numpy number, a TOML or command-line string)
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name), AdaptRecipe))
        for name in ("epochs", "repeats"):
            if getattr(self, name) < 1:
                raise FmnistError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise FmnistError(f"lr must be > 0, got {self.lr}")
        for name in ("rehearsal", "freeze", "seed"):  # a seed draws with numpy's generators too: never negative
            if getattr(self, name) < 0:
                raise FmnistError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("holdout", "forgetting"):
            if not 0 <= getattr(self, name) < 1:
                raise FmnistError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if unknown := sorted(set(self.augment) - set(AUGMENTATIONS)):
            raise FmnistError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}")

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "augment": list(self.augment)}
