"""One training loop for every network and task: FER pre-training, ER fine-tuning, training from scratch.

A run folder holds last.safetensors (resumable checkpoint), best.safetensors (best model by validation
score), config.json and history.csv / history.json. `resume` needs no flags: the checkpoint has the config.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engage.data.dataset import FaceDataset
from engage.errors import EngageError, UsageError
from engage.io.files import atomic_write, write_text
from engage.models.checkpoint import (
    load_checkpoint,
    load_network,
    model_config,
    save_checkpoint,
    save_model,
)
from engage.models.device import torch_device
from engage.models.networks import (
    FaceNet,
    build_model,
    count_parameters,
    faces_to_tensor,
    predict_proba,
    transfer_backbone,
)
from engage.training.augment import augment

if TYPE_CHECKING:
    from engage.faces.crop import FaceSettings

SELECT_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc")
BALANCE = ("none", "subject", "corpus", "corpus,subject")

RECIPES: dict[str, dict] = {
    # the paper: SGD momentum, lr 0.02 x0.8 every 500 steps, batch 32, 20 epochs, L2, flip / pad-crop / rotation
    "paper": dict(
        optimizer="sgd",
        lr=0.02,
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-4,
        schedule="step",
        step_size=500,
        gamma=0.8,
        batch_size=32,
        epochs=20,
        label_smoothing=0.0,
        warmup_steps=0,
    ),
    # engage's default: one-cycle (warm-up then cosine), Nesterov, label smoothing, larger batches (faster on CPU)
    "default": dict(
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="onecycle",
        batch_size=64,
        epochs=40,
        label_smoothing=0.1,
        warmup_steps=-1,
    ),
}


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved with its checkpoints so `resume` needs nothing else."""

    task: str = "fer"  # 'fer' or 'engagement': only picks defaults and how the best epoch is chosen
    model: str = "compact"
    model_args: dict = field(default_factory=dict)
    recipe: str = "default"
    epochs: int = 40
    batch_size: int = 64
    optimizer: str = "sgd"  # 'sgd' or 'adamw'
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # 'step' (the paper), 'cosine' or 'onecycle'
    step_size: int = 500
    gamma: float = 0.8
    warmup_steps: int = -1  # -1: 5% of the run (onecycle)
    label_smoothing: float = 0.1
    class_weights: bool = False  # weight the loss by inverse class frequency (imbalanced engagement data)
    flip: bool = True
    pad: int = 4  # random translation of up to this many pixels (the paper's 4-px pad + random crop)
    rotate: float = 16.0  # degrees
    scale: float = 0.0  # random zoom by up to this fraction (0.2: 80-120%)
    erase: float = 0.0  # probability of random erasing (blank a rectangle of 2-20% of the face)
    bf16: bool | None = None  # None: bf16 autocast where the device computes bf16 natively (AVX-512 BF16 / AMX, CUDA)
    device: str = "auto"  # 'auto' (a CUDA GPU if there is one, else the CPU), 'cpu', 'cuda' or 'cuda:N'
    channels_last: bool = True
    seed: int = 0
    threads: int = 0  # 0: all cores
    select: str = "accuracy"  # validation metric that picks best.safetensors (SELECT_METRICS)
    init: str | None = None  # a model file whose backbone initialises this network (the ER model)
    freeze: int = 0  # keep the first N conv blocks of the initialised backbone fixed (batch norm included)
    balance: str = "none"  # draw training faces so that each 'corpus', each 'subject' or both weigh the same
    epoch_size: int = 0  # faces drawn per epoch (0: as many as there are)
    stop_after: int = 0  # end the run after this epoch, on the schedule of `epochs` (0: run every epoch)
    save_every_s: float = 300.0  # mid-epoch checkpoints, so a killed run loses at most this much
    data: str | list[str] | None = None  # the dataset file(s), recorded so that `resume` needs no flags
    val: str | list[str] | None = None
    split: str = "auto"  # where validation faces come from: 'auto', 'val-file', 'source', 'subject' or 'none'
    val_fraction: float = 0.2

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides: Any) -> TrainConfig:
        if recipe not in RECIPES:
            raise UsageError(f"unknown recipe {recipe!r}; choose one of: {', '.join(RECIPES)}")
        values = dict(RECIPES[recipe], recipe=recipe)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adamw"):
            raise UsageError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.schedule not in ("step", "cosine", "onecycle"):
            raise UsageError(f"schedule must be step, cosine or onecycle, got {self.schedule!r}")
        if self.select not in SELECT_METRICS:
            raise UsageError(f"select must be one of {', '.join(SELECT_METRICS)}, got {self.select!r}")
        if self.balance not in BALANCE:
            raise UsageError(f"balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")
        if self.epoch_size < 0 or self.freeze < 0 or not 0 <= self.stop_after <= self.epochs:
            raise UsageError("epoch size and freeze must be >= 0, and stop-after between 0 and the epochs")
        if self.freeze and not self.init:
            raise UsageError("--freeze keeps initialised layers fixed: give --init too")
        if not (0 <= self.scale < 1 and 0 <= self.erase <= 1 and self.pad >= 0 and self.rotate >= 0):
            raise UsageError("augmentation: scale must be in [0, 1), erase in [0, 1], shift and rotate >= 0")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise UsageError("epochs must be >= 1, batch size >= 2 and lr > 0")
        torch_device(self.device)


def cpu_has_bf16() -> bool:
    """True if this CPU computes bf16 natively; elsewhere bf16 autocast is many times slower than fp32."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """True where bf16 autocast is fast on this device: a CUDA GPU that supports it, or a CPU with native bf16."""
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at a step: a pure function of the step, so a resumed run follows the same curve."""
    if config.schedule == "step":
        return config.lr * config.gamma ** (step // config.step_size)
    warmup = config.warmup_steps if config.warmup_steps >= 0 else int(0.05 * total_steps)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_finite(loss_sum: torch.Tensor, step: int) -> None:
    if not torch.isfinite(loss_sum):
        raise EngageError(f"the loss became {float(loss_sum)} by step {step}; lower --lr")


def validation_metrics(labels: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, and for a binary task the positive class's F1 and ROC AUC, decided
    as every command decides (engage.models.decision: the positive class by name, threshold 0.5 until one is chosen)."""
    from engage.evaluation.metrics import basic_metrics
    from engage.models.decision import Decision

    return basic_metrics(labels, proba, Decision.for_classes(class_names))


def check_selection(config: TrainConfig, val: FaceDataset | None) -> None:
    """Refuse, before any training, a validation set that cannot pick the best epoch by the chosen metric."""
    if val is None:
        return
    present = sorted(set(val.labels.tolist()))
    if config.select == "auc" and len(val.class_names) != 2:
        raise EngageError(
            f"--select auc needs a binary task; these classes are {', '.join(val.class_names)}: "
            "use --select accuracy, balanced_accuracy or macro_f1"
        )
    if len(present) < 2:
        only = val.class_names[present[0]] if present else "none"
        raise EngageError(
            f"the validation faces hold one class only ({only}), so {config.select} cannot pick the best "
            "epoch; use a bigger --val-fraction, another --seed or another --val file"
        )


def selection_score(row: dict, config: TrainConfig) -> float:
    """The validation score that picks the best epoch; a missing or non-finite one stops the run loudly."""
    key = f"val_{config.select}"
    if key not in row:
        have = ", ".join(k[4:] for k in row if k.startswith("val_"))
        raise EngageError(
            f"--select {config.select}: epoch {row['epoch']} has no validation {config.select} (it has {have})"
        )
    score = row[key]
    if not math.isfinite(score):
        raise EngageError(
            f"epoch {row['epoch']}: validation {config.select} is {score}; the validation split cannot "
            "rank the classes (one class only, or the network gave NaN)"
        )
    return float(score)


def sampling_weights(data: FaceDataset, balance: str) -> np.ndarray:
    """Each face's chance of being drawn: every corpus and/or every subject (within its corpus) weighs the same."""
    weights = np.ones(len(data), np.float64)
    assert data.corpus is not None  # FaceDataset.__post_init__ fills it
    groups = data.corpus if "corpus" in balance else np.full(len(data), "", dtype=str)
    for group in np.unique(groups):
        members = groups == group
        if "subject" in balance:
            subjects, inverse, counts = np.unique(data.subjects[members], return_inverse=True, return_counts=True)
            weights[members] = 1.0 / (len(subjects) * counts[inverse])
        else:
            weights[members] = 1.0 / members.sum()
    return weights / weights.sum()


def epoch_order(config: TrainConfig, n: int, epoch: int, weights: np.ndarray | None) -> np.ndarray:
    """The faces of one epoch, a pure function of the seed and epoch (so a resumed run draws the same)."""
    rng = np.random.default_rng([config.seed, epoch])
    if weights is None and config.epoch_size in (0, n):
        return rng.permutation(n)
    size = config.epoch_size or n
    return rng.choice(n, size=size, replace=True, p=weights if weights is not None else None)


@dataclass
class TrainResult:
    run_dir: str
    best_metrics: dict
    history: list[dict]
    model: FaceNet


def _class_weights(labels: np.ndarray, num_classes: int, sampling: np.ndarray | None = None) -> torch.Tensor:
    """Inverse class frequency, as the faces are drawn: each class then weighs the same in the loss."""
    share = np.bincount(labels, weights=sampling, minlength=num_classes).astype(np.float64)
    share = share / share.sum()
    present = share > 0  # a class absent from the training faces gets no weight (it has no loss to weigh)
    weights = np.where(present, 1.0 / (num_classes * np.where(present, share, 1.0)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def network_args(config: TrainConfig, settings: FaceSettings) -> dict:
    """The network's arguments: the config's, plus the input the faces need (colour, or a size other than 48
    for the networks with dense layers)."""
    args = dict(config.model_args)
    if settings.color:
        args["in_channels"] = 3
    if settings.size != 48 and config.model in ("cnn", "vgg"):
        args["input_size"] = settings.size
    return args


def freeze_blocks(model: FaceNet, count: int) -> list[torch.nn.Module]:
    """Fix the first `count` conv blocks (up to each pooling layer): no gradients, batch norm kept in eval mode.
    Returns the frozen modules (put them back in eval mode after every model.train())."""
    frozen, blocks = [], 0
    for module in model.features:
        if blocks >= count:
            break
        frozen.append(module)
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        if isinstance(module, torch.nn.MaxPool2d):
            blocks += 1
    return frozen


def check_training_data(train: FaceDataset, val: FaceDataset | None) -> None:
    if len(train) == 0:
        raise EngageError("the training split is empty")
    if (train.labels < 0).any():
        raise EngageError("the training data has unlabelled faces; pre-process a labelled source")
    present = np.unique(train.labels)
    if len(present) < 2:
        name = train.class_names[present[0]] if len(present) else "none"
        raise EngageError(f"the training data has one class only ({name}); a classifier needs at least two")
    if val is not None:
        if len(val) == 0:
            raise EngageError("the validation split is empty; use a bigger --val-fraction or another --val file")
        if val.class_names != train.class_names:
            raise EngageError(f"validation classes {val.class_names} differ from training classes {train.class_names}")


def _write_history(run_dir: str, history: list[dict]) -> None:
    write_text(os.path.join(run_dir, "history.json"), json.dumps(history, indent=1))
    columns = sorted({key for row in history for key in row}, key=lambda k: (k not in ("epoch", "step"), k))

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)

    atomic_write(os.path.join(run_dir, "history.csv"), write)


def train(
    config: TrainConfig,
    train_data: FaceDataset,
    val_data: FaceDataset | None,
    run_dir: str,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[int, FaceNet], None] | None = None,
) -> TrainResult:
    """Train (or resume) one network; keeps best.safetensors by the validation score after every epoch.

    on_epoch(epoch, model) is called after each epoch with the model in eval mode (e.g. to score held-out
    faces at every epoch, as cross-validation does); it must not change the model."""
    config.validate()
    check_training_data(train_data, val_data)
    check_selection(config, val_data)
    differ = val_data.settings.crop_differences(train_data.settings) if val_data is not None else []
    if differ:
        raise EngageError(
            f"validation faces were cut otherwise than the training faces ({', '.join(differ)}); "
            "pre-process both the same way"
        )
    if not resume and os.path.exists(os.path.join(run_dir, "last.safetensors")):
        raise EngageError(
            f"{run_dir} already holds a run; continue it with 'engage train resume --out {run_dir}' "
            "or choose another --out (nothing was changed)"
        )
    device = torch_device(config.device)  # the device a run trains on
    if config.bf16 is None:
        config.bf16 = native_bf16(device)
    os.makedirs(run_dir, exist_ok=True)
    threads = config.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    num_classes = len(train_data.class_names)
    normalize = train_data.settings.normalize

    torch.manual_seed(config.seed)
    config.model_args = network_args(config, train_data.settings)
    model = build_model(config.model, num_classes, **config.model_args)
    inputs = faces_to_tensor(train_data.faces, normalize)
    labels = torch.from_numpy(train_data.labels.astype(np.int64))
    input_keys = ("in_channels", "input_size")
    if config.init and not resume:
        donor, donor_config = load_network(config.init)
        donor_args = {k: v for k, v in donor_config.get("model_args", {}).items() if k not in input_keys}
        if donor_config["model"] != config.model or donor_args != {
            k: v for k, v in config.model_args.items() if k not in input_keys
        }:
            raise EngageError(
                f"--init {config.init} is a {donor_config['model']!r} network; train --model "
                f"{donor_config['model']} to fine-tune it"
            )
        if donor_config.get("face_settings", {}).get("normalize", normalize) != normalize:
            raise EngageError(
                f"--init {config.init} was trained on '{donor_config['face_settings']['normalize']}' "
                f"normalised faces; pre-process this data the same way"
            )
        taken, left = transfer_backbone(model, donor.state_dict())
        log(
            f"initialised from {config.init}: took {len(taken)} tensors (backbone), left {len(left)} fresh ({', '.join(left)})"
        )
    else:
        # per-channel standardisation, measured on the training faces and stored in the model
        model.input_mean.fill_(float(inputs.mean()))
        model.input_std.fill_(float(inputs.std().clamp_min(1e-6)))
    frozen = freeze_blocks(model, config.freeze) if config.freeze else []
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack the documented to(memory_format=)
    inputs, labels = inputs.to(device), labels.to(device)

    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 and p.requires_grad]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)

    sampling = sampling_weights(train_data, config.balance) if config.balance != "none" else None
    weights = _class_weights(train_data.labels, num_classes, sampling) if config.class_weights else None
    if weights is not None:
        weights = weights.to(device)
    criterion = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    n = len(train_data)
    steps_per_epoch = max(1, (config.epoch_size or n) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    from engage.models.decision import Decision

    decision = Decision.for_classes(train_data.class_names, rule="default: 0.5 (no threshold chosen yet)")
    meta = model_config(
        config.model,
        num_classes,
        train_data.class_names,
        config.model_args,
        train_data.meta.get("settings"),
        task=config.task,
        train_config=asdict(config),
        **({"decision": decision.to_dict()} if decision.binary else {}),
    )

    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "step": 0, "best": None, "best_epoch": None, "history": []}
    last_path = os.path.join(run_dir, "last.safetensors")
    if resume:
        if not os.path.exists(last_path):
            raise EngageError(f"{run_dir}: nothing to resume (no last.safetensors); start the run without --resume")
        state = load_checkpoint(last_path, model, optimizer)
        log(f"resumed {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    else:
        write_text(os.path.join(run_dir, "config.json"), json.dumps(meta, indent=1))
    log(
        f"{config.model} on {device}: {count_parameters(model):,} parameters; {n:,} training faces, "
        f"{len(val_data) if val_data is not None else 0:,} validation faces; {config.epochs} epochs of {steps_per_epoch} steps"
    )

    best_model_path = os.path.join(run_dir, "best.safetensors")
    val_inputs = faces_to_tensor(val_data.faces, normalize).to(device) if val_data is not None else None
    last_save = time.monotonic()
    last_epoch = config.stop_after or config.epochs
    for epoch in range(state["epoch"], last_epoch):
        model.train()
        for module in frozen:
            module.eval()
        order = torch.from_numpy(epoch_order(config, n, epoch, sampling)).to(device)
        started, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), device=device)  # summed on the device: no wait for the GPU at every step
        for step_in_epoch in range(state["step_in_epoch"], steps_per_epoch):
            step = epoch * steps_per_epoch + step_in_epoch
            index = order[step_in_epoch * config.batch_size : (step_in_epoch + 1) * config.batch_size]
            generator = torch.Generator(device).manual_seed(config.seed * 1_000_003 + step)
            torch.manual_seed(config.seed * 7_919 + step)  # dropout: a function of the step, for exact resume
            batch = augment(
                inputs[index], generator, config.flip, config.pad, config.rotate, config.scale, config.erase
            )
            if config.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(config, step, total_steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(batch)
            loss = criterion(logits.float(), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(index)
            loss_sum += loss.detach() * len(index)
            state.update(step=step + 1, step_in_epoch=step_in_epoch + 1)
            save_now = time.monotonic() - last_save > config.save_every_s and step_in_epoch + 1 < steps_per_epoch
            if device.type == "cpu" or save_now or step_in_epoch + 1 == steps_per_epoch or step % 50 == 0:
                _check_finite(loss_sum, step)  # a non-finite sum: some step's loss was inf or nan; never saved
            if save_now:
                save_checkpoint(last_path, model, optimizer, meta, state)
                last_save = time.monotonic()
        seconds = time.perf_counter() - started
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "step": state["step"],
            "lr": round(lr_at(config, state["step"] - 1, total_steps), 6),
            "train_loss": round(float(loss_sum) / max(seen, 1), 5),
            "images_per_s": round(seen / max(seconds, 1e-9), 1),
        }
        if val_data is not None:
            assert val_inputs is not None  # made with val_data
            proba = predict_proba(
                model, val_inputs, batch_size=32 if device.type == "cpu" else 512, bf16=config.bf16
            ).numpy()
            metrics = validation_metrics(val_data.labels, proba, train_data.class_names)
            row.update({f"val_{k}": round(v, 5) if math.isfinite(v) else v for k, v in metrics.items()})
            score = selection_score(row, config)
        else:
            score = -row["train_loss"]
        improved = state["best"] is None or score > state["best"]
        if improved:
            state.update(best=score, best_epoch=epoch + 1)
            save_model(best_model_path, model, dict(meta, metrics=row, epoch=epoch + 1))
        if on_epoch is not None:  # before the checkpoint: a run killed in between redoes this epoch, the same way
            model.eval()
            on_epoch(epoch + 1, model)
        state["history"].append(row)
        state.update(epoch=epoch + 1, step_in_epoch=0)
        save_checkpoint(last_path, model, optimizer, meta, state)
        last_save = time.monotonic()
        _write_history(run_dir, state["history"])
        shown = ", ".join(f"{k} {v}" for k, v in row.items() if k != "epoch")
        log(f"epoch {epoch + 1}/{last_epoch}: {shown}{'  (best)' if improved else ''}")

    best_model, _ = load_network(best_model_path)
    best_row = state["history"][state["best_epoch"] - 1] if state["best_epoch"] else {}
    return TrainResult(run_dir, best_row, state["history"], best_model)


def task_defaults(task: str, init: str | None) -> dict:
    """What differs between pre-training on expressions and fine-tuning on engagement."""
    if task == "fer":
        return dict(select="accuracy", class_weights=False)
    if task == "engagement":
        values = dict(select="auc", class_weights=True, epochs=20)
        if init:
            values.update(lr=0.01)  # fine-tuning every layer: a gentler learning rate than from scratch
        return values
    raise UsageError(f"unknown task {task!r}; choose fer or engagement")


SOURCE_SPLIT_NAMES = {"train": "train", "Training": "train", "val": "val", "validation": "val", "PublicTest": "val"}


def load_datasets(paths: str | list[str]) -> FaceDataset:
    """One dataset file, or several combined (same classes and face settings; see dataset.concatenate)."""
    from engage.data.dataset import concatenate

    paths = [paths] if isinstance(paths, str) else list(paths)
    return concatenate([FaceDataset.load(path) for path in paths], paths)


def split_datasets(config: TrainConfig) -> tuple[FaceDataset, FaceDataset | None]:
    """Load the training data and pick its validation faces as the config says; refuse leaking splits."""
    from engage.data.splits import check_no_leak, subject_split

    if not config.data:
        raise UsageError("--data is required: a dataset file made by 'engage preprocess'")
    data = load_datasets(config.data)
    if config.val:
        val = load_datasets(config.val)
        if val.class_names != data.class_names:
            raise EngageError(
                f"{config.val}: classes {val.class_names} differ from {config.data}'s {data.class_names}; "
                "pre-process both with the same --label-map"
            )
        shared = (set(data.subjects.tolist()) & set(val.subjects.tolist())) - {""}
        if shared:
            raise EngageError(
                f"{config.val} shares subject(s) {', '.join(sorted(shared)[:5])} with {config.data}; "
                "validation must hold unseen subjects"
            )
        return data, val
    # a source's own split: 'train'/'val' (manifest column, --split subject) or fer2013.csv's Training/PublicTest
    source_split = np.array([SOURCE_SPLIT_NAMES.get(name, "") for name in data.split.tolist()], dtype=str)
    mode = config.split
    if mode == "auto":
        mode = (
            "source" if {"train", "val"} <= set(source_split.tolist()) else ("subject" if data.has_subjects else "none")
        )
    if mode == "source":
        if not {"train", "val"} <= set(source_split.tolist()):
            raise EngageError(f"{config.data} has no train/val split; use --split subject or give --val")
        split = source_split
    elif mode == "subject":
        split = subject_split(data.subjects, config.val_fraction, config.seed)
    elif mode == "none":
        return data, None
    else:
        raise UsageError(f"--split must be auto, source, subject or none, got {config.split!r}")
    if data.has_subjects:
        check_no_leak(data.subjects, split)
    return data.subset(split == "train"), data.subset(split == "val")


def run_training(config: TrainConfig, run_dir: str, log: Callable[[str], None] = print) -> TrainResult:
    """`engage train`: load the data as the config says and train."""
    train_data, val_data = split_datasets(config)
    return train(config, train_data, val_data, run_dir, resume=False, log=log)


def resume_training(
    run_dir: str, threads: int | None = None, log: Callable[[str], None] = print, device: str | None = None
) -> TrainResult:
    """Continue a killed run exactly where it stopped, from its own checkpoint and config.

    threads: CPU threads for the rest of the run (e.g. another machine, or a core now busy elsewhere).
    device: where the rest of the run trains, if not where it started (its random draws then differ).
    """
    from engage.models.checkpoint import read_file

    last = os.path.join(run_dir, "last.safetensors")
    if not os.path.exists(last):
        raise EngageError(f"{run_dir}: nothing to resume (no last.safetensors)")
    _, meta = read_file(last)
    config = TrainConfig(**meta["config"]["train_config"])
    if not config.data and os.path.exists(os.path.join(run_dir, "run-key.json")):
        raise EngageError(
            f"{run_dir} is one fold of a cross-validation; continue it by running the same "
            f"'engage train ... --cv' again with --out {os.path.dirname(os.path.abspath(run_dir))}"
        )
    if threads:
        config.threads = threads
    if device:
        config.device = device
    train_data, val_data = split_datasets(config)
    return train(config, train_data, val_data, run_dir, resume=True, log=log)
