"""Fine-tuning in phases: the Keras transfer-learning guide's protocol as part of one resumable run.

    --freeze-epochs N   epochs 1..N train the classifier only (the backbone frozen, its BatchNorm
                        in inference mode), then
    --unfreeze all|K    every backbone layer, or the top K of those holding weights, trains on,
    --backbone-lr-multiplier X   at X times the classifier's learning rate.

"Backbone" is every layer but the classifier (the last layer that holds weights): the nested
keras.applications model of a keras_* model, everything below the logits of keras_cnn's own. The
phase is a function of the epoch, so a resumed run (at a boundary or inside either phase) enters
the phase its checkpoint's epoch is in, with nothing else to record.

The optimizer is built over every variable the fine-tune phase trains, so its slots (and a
checkpoint's) are the same in both phases; a phase change re-traces the compiled step, which
captures model.trainable_variables when it is traced.
"""

import keras

from keras_cnn.models.applications import freeze_batch_norm

FROZEN, FINE_TUNE = "frozen", "fine-tune"


def classifier_layer(model: keras.Model) -> keras.layers.Layer:
    """The last layer holding weights: the one whose shape is the class count."""
    return [layer for layer in _leaves(model) if layer.weights][-1]


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer holding weights below the classifier, bottom to top."""
    classifier = classifier_layer(model)
    return [layer for layer in _leaves(model) if layer.weights and layer is not classifier]


def _leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


class FineTuning:
    """Which backbone layers train in each epoch, and the backbone's learning-rate multiplier."""

    def __init__(self, model, *, freeze_epochs=0, unfreeze="all", lr_multiplier=1.0, freeze_bn=False):
        self.model, self.freeze_epochs = model, freeze_epochs
        self.lr_multiplier, self.freeze_bn = lr_multiplier, freeze_bn
        self.backbone = backbone_layers(model)
        unfreeze = str(unfreeze).strip()
        top = len(self.backbone) if unfreeze == "all" else min(int(unfreeze), len(self.backbone))
        self.unfrozen = self.backbone[len(self.backbone) - top :]
        self.phase = None

    def phase_of(self, epoch: int) -> str:
        """The phase of 0-based `epoch`."""
        return FROZEN if epoch < self.freeze_epochs else FINE_TUNE

    def enter(self, phase: str) -> bool:
        """Set what trains for `phase`; True when that changed what trains."""
        if phase == self.phase:
            return False
        for layer in self.backbone:
            layer.trainable = False
        if phase == FINE_TUNE:
            for layer in self.unfrozen:
                layer.trainable = True
            if self.freeze_bn:  # pretrained statistics stay (models.applications.freeze_batch_norm)
                for layer in self.unfrozen:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = False
        self.phase = phase
        return True

    def describe(self) -> str:
        """The run's plan in one line, for its start."""
        which = "all" if len(self.unfrozen) == len(self.backbone) else f"the top {len(self.unfrozen)} of"
        rate = f" at {self.lr_multiplier:g}x the classifier's learning rate" if self.lr_multiplier != 1.0 else ""
        bn = ", BatchNorm frozen" if self.freeze_bn else ""
        first = f"the classifier alone for {self.freeze_epochs} epoch(s), then " if self.freeze_epochs else ""
        return f"fine-tuning: {first}{which} {len(self.backbone)} backbone layers{rate}{bn}"

    def train_superset(self) -> None:
        """Make trainable what any phase trains (what the optimizer is built over); no phase is
        entered yet, so the first enter() traces the step."""
        self.enter(FINE_TUNE)
        self.phase = None

    def scaled_variables(self) -> list:
        """The trainable backbone variables whose updates the multiplier scales (none when it is 1)."""
        if self.lr_multiplier == 1.0:
            return []
        return [v for layer in self.backbone for v in layer.trainable_weights]


def fine_tuning_for(cfg, model, freeze_bn: bool) -> FineTuning | None:
    """The run's FineTuning, or None when every layer trains at one rate throughout. BatchNorm
    freezing without phases stays models.applications.freeze_batch_norm's."""
    run = cfg.run
    if not run.freeze_epochs and run.unfreeze.strip() == "all" and run.backbone_lr_multiplier == 1.0:
        if freeze_bn:
            freeze_batch_norm(model)
        return None
    return FineTuning(
        model,
        freeze_epochs=run.freeze_epochs,
        unfreeze=run.unfreeze,
        lr_multiplier=run.backbone_lr_multiplier,
        freeze_bn=freeze_bn,
    )
