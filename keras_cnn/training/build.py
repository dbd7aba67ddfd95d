"""The build phase: precision policy, model, optimizer and schedule, EMA and the compiled Trainer.

`train()`, the benchmark's StepTimer and the diagnostics all build through `build_training`,
so what they time or check is exactly what a training run executes.
"""

import dataclasses

import keras

from keras_cnn.config import pretrained_backbone
from keras_cnn.errors import UsageError
from keras_cnn.models import create_model
from keras_cnn.optimizers import OPTIMIZERS
from keras_cnn.training.finetune import FineTuning, fine_tuning_for
from keras_cnn.training.optim import WeightEMA, build_optimizer, per_example_loss
from keras_cnn.training.precision import precision_policy, resolve_precision
from keras_cnn.training.strategy import get_strategy
from keras_cnn.training.trainer import Trainer


@dataclasses.dataclass
class Built:
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: object  # LearningRateSchedule: step -> learning rate
    ema: WeightEMA | None
    trainer: Trainer
    precision: str  # the Keras dtype policy actually used
    strategy: object
    fine_tuning: FineTuning | None = None  # phases and the backbone's rate (training.finetune)

    def enter_epoch(self, epoch: int) -> str | None:
        """Fine-tuning: the phase of 0-based `epoch`, entered (and the step re-traced) if it is new."""
        if self.fine_tuning is None:
            return None
        ft = self.fine_tuning
        if ft.enter(ft.phase_of(epoch)):
            self.trainer.retrace(ft.scaled_variables(), ft.lr_multiplier)
        return ft.phase

    def checkpoint_groups(self):
        """The variables a checkpoint holds. model.variables, not weights: dropout's
        seed-generator state must resume too."""
        groups = {"model": list(self.model.variables), "optimizer": list(self.optimizer.variables)}
        if self.ema is not None:
            groups["ema"] = list(self.ema.shadows)
        return groups


def model_options(cfg):
    """The model's keyword options from the config, with those other sections feed it (weight decay
    as L2, except under an optimizer that decays the weights itself: never both)."""
    options = dict(cfg.model.options)
    if not OPTIMIZERS[cfg.optimizer.name].decoupled_decay and cfg.optimizer.weight_decay:
        options["weight_decay"] = cfg.optimizer.weight_decay
    return options


def build_training(
    cfg, *, image_shape, num_classes, steps_per_epoch, strategy=None, learning_rate=None, class_weights=None
):
    """Everything a training step needs, under cfg.run.precision and the strategy's scope.

    learning_rate: a LearningRateSchedule replacing cfg's schedule (the LR range test ramps it).
    class_weights: one loss weight per class (training.class_weights), or None.
    """
    strategy = strategy or get_strategy(cfg.run.strategy)
    precision = resolve_precision(cfg.run.precision)
    replicas = strategy.num_replicas_in_sync
    with precision_policy(precision), strategy.scope():
        model = create_model(cfg.model.name, image_shape, num_classes, **model_options(cfg))
        # Before the optimizer learns what trains: with phases, all the fine-tune phase trains.
        fine_tuning = fine_tuning_for(cfg, model, freeze_bn=pretrained_backbone(cfg) and not cfg.run.train_bn)
        if fine_tuning is not None:
            fine_tuning.train_superset()
            if fine_tuning.lr_multiplier != 1.0 and replicas > 1:
                # Trainer scales the backbone's update by assigning in replica context, which
                # mirrored variables refuse.
                raise UsageError(
                    f"--backbone-lr-multiplier runs on one replica, not {replicas}; "
                    "train with --strategy default or leave the multiplier at 1"
                )
        if replicas > 1:
            synchronize_batch_norm(model)
        optimizer, schedule = build_optimizer(
            cfg.optimizer,
            cfg.schedule,
            num_replicas=replicas,
            steps_per_epoch=steps_per_epoch,
            total_steps=steps_per_epoch * cfg.run.epochs,
            precision=precision,
            learning_rate=learning_rate,
        )
        optimizer.build(model.trainable_variables)
        ema = WeightEMA(model, cfg.ema.decay) if cfg.ema.enabled else None
    trainer = Trainer(
        model,
        optimizer,
        per_example_loss(cfg.optimizer, num_classes, cfg.data.multi_label),
        strategy,
        global_batch_size=cfg.data.batch_size,
        ema=ema,
        jit_compile=cfg.run.jit_compile,
        class_weights=class_weights,
        multi_label=cfg.data.multi_label,
    )
    built = Built(model, optimizer, schedule, ema, trainer, precision, strategy, fine_tuning)
    built.enter_epoch(0)
    return built


def synchronize_batch_norm(model):
    """Batch statistics over the global batch when there are several replicas.

    Otherwise each replica normalizes by its own slice and updates its own moving statistics,
    which then differ between workers (seen here under MultiWorkerMirroredStrategy: identical
    kernels, different moving means). Synchronized BN computes what one replica would on the
    whole batch.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
