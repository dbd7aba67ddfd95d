"""Options as data: every model option, optimizer and schedule in the tables reaches validation, the
command line, config.json and a training step, without a list kept anywhere else."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_cnn.cli import params
from keras_cnn.cli import train as train_cli
from keras_cnn.config import TrainConfig, apply_overrides, config_differences, upgrade_config, validate
from keras_cnn.errors import UsageError
from keras_cnn.models import all_options, create_model, list_models, model_options
from keras_cnn.optimizers import OPTIMIZERS, SCHEDULES, ScheduleConfig, learning_rate_at
from keras_cnn.training.build import model_options as built_options
from keras_cnn.training.optim import build_optimizer

STEPS = np.arange(0, 101, dtype="float32")  # 10 epochs of 10 steps


def rates(base_lr=0.1, total=100, **fields):
    return learning_rate_at(STEPS, base_lr, ScheduleConfig(**fields), 10, total).numpy()


# ------------------------------------------------------------------------------ schedules, by value


def test_constant_is_the_base_rate_throughout():
    np.testing.assert_allclose(rates(name="constant"), 0.1)


def test_piecewise_multiplies_the_base_rate_from_each_boundary_epoch():
    lr = rates(name="piecewise", boundaries=(2.0, 5.0), multipliers=(0.1, 0.01))
    np.testing.assert_allclose(lr[[0, 19, 20, 49, 50, 100]], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_exponential_decays_per_decay_epochs_in_steps_or_smoothly():
    stairs = rates(name="exponential", decay_rate=0.5, decay_epochs=2.0, staircase=True)
    smooth = rates(name="exponential", decay_rate=0.5, decay_epochs=2.0, staircase=False)
    np.testing.assert_allclose(stairs[[0, 19, 20, 45]], [0.1, 0.1, 0.05, 0.025], rtol=1e-6)
    np.testing.assert_allclose(smooth[[10, 30]], [0.1 * 0.5**0.5, 0.1 * 0.5**1.5], rtol=1e-5)


def test_cosine_falls_from_the_peak_to_its_final_fraction_after_warmup():
    lr = rates(name="cosine", final_fraction=0.1, warmup_epochs=1.0)
    np.testing.assert_allclose(lr[[0, 4, 9]], [0.1 * 1 / 10, 0.1 * 5 / 10, 0.1], rtol=1e-5)  # linear warm-up
    halfway = 10 + (100 - 10) / 2
    np.testing.assert_allclose(lr[[10, int(halfway), 100]], [0.1, 0.01 + 0.5 * 0.09, 0.01], rtol=1e-5)


def test_onecycle_climbs_from_a_25th_to_the_peak_at_30_percent_then_down():
    lr = rates(name="onecycle", final_fraction=0.0)
    np.testing.assert_allclose(lr[[0, 15, 30, 65, 100]], [0.004, 0.052, 0.1, 0.05, 0.0], atol=1e-6)


# ------------------------------------------------------------------------------ every schedule, by property


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_is_finite_positive_and_extends_only_if_length_free(name):
    fields = {"boundaries": (3.0,), "multipliers": (0.1,)} if name == "piecewise" else {}
    short, long = rates(name=name, total=100, **fields), rates(name=name, total=200, **fields)
    assert np.isfinite(short).all() and (short[:-1] > 0).all() and short.max() <= 0.1 + 1e-7
    assert np.allclose(short, long) == SCHEDULES[name].extendable  # extendable: the run's length changes nothing
    for field in SCHEDULES[name].fields():
        assert field in ScheduleConfig.__dataclass_fields__
    cfg = validate(
        apply_overrides(
            TrainConfig(),
            [f"schedule.name={name}"] + [f"schedule.{k}={','.join(map(str, v))}" for k, v in fields.items()],
        )
    )
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg


# ------------------------------------------------------------------------------ every optimizer


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_validates_builds_and_lowers_the_loss(name):
    cfg = validate(
        apply_overrides(
            TrainConfig(),
            [f"optimizer.name={name}", "optimizer.learning_rate=0.05", "optimizer.weight_decay=1e-3", "model.name=mlp"],
        )
    )
    model = create_model("mlp", (4, 4, 1), 3, hidden=(8,), **built_options(cfg))
    assert bool(model.losses) != OPTIMIZERS[name].decoupled_decay  # L2 or decoupled decay, never both
    optimizer, _ = build_optimizer(
        cfg.optimizer, cfg.schedule, num_replicas=1, steps_per_epoch=10, total_steps=10, precision="float32"
    )
    keras.utils.set_random_seed(0)
    x = tf.random.normal((32, 4, 4, 1))
    y = tf.constant(np.arange(32) % 3)

    def loss():
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True))

    first = float(loss())
    for _ in range(20):
        with tf.GradientTape() as tape:
            value = loss()
        optimizer.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
    assert float(loss()) < first


def test_the_optimizer_and_schedule_flags_list_the_tables(capsys):
    with pytest.raises(SystemExit):
        train_cli.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"{name}:" in text for name in [*OPTIMIZERS, *SCHEDULES])


# ------------------------------------------------------------------------------ every model option


def _value(option):
    """A valid value for the option, other than its default where one exists."""
    hint = option.type
    if isinstance(option.spec.rule, tuple):
        return next((c for c in option.spec.rule if c != option.default), option.default)
    if option.default is None or isinstance(option.default, bool):
        return 0.5 if option.default is None else not option.default
    if isinstance(option.default, tuple):
        return (*option.default, 1) if option.default else (4,)
    if isinstance(option.default, float):
        return option.default * 0.5 if option.default else 0.25
    return option.default + 1 if isinstance(option.default, int) else hint


def _text(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("option", [o for o in all_options().values() if not o.spec.fed_by], ids=lambda o: o.name)
def test_every_model_option_is_a_flag_a_set_key_and_a_config_json_field(option, capsys):
    model = next(m for m in list_models() if option.name in model_options(m))
    value = _value(option)
    flag = "--" + option.name.replace("_", "-")
    if isinstance(value, bool):
        argv = [flag if value else "--no-" + option.name.replace("_", "-")]
    else:
        argv = [flag, *(_text(value).split(",") if isinstance(value, tuple) else [_text(value)])]
    args = train_cli.build_parser().parse_args(["--model", model, *argv])
    from_flag = validate(train_cli.config_from_args(args))
    from_set = validate(apply_overrides(TrainConfig(), [f"model.name={model}", f"model.{option.name}={_text(value)}"]))
    assert from_flag.model == from_set.model and from_set.model.get(option.name) == value
    assert TrainConfig.from_dict(json.loads(from_set.to_json())) == from_set
    assert config_differences(from_set.to_dict(), from_set) == []
    reset = apply_overrides(from_set, [f"model.{option.name}=none"])  # back to the model's default
    assert reset.model.get(option.name) is None
    assert option.spec.help and params.main(["--model", model, *argv]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", list_models())
def test_every_model_refuses_an_option_it_does_not_take(name):
    foreign = next(o for o in all_options() if o not in model_options(name) and not all_options()[o].spec.fed_by)
    cfg = apply_overrides(
        TrainConfig(), [f"model.name={name}", f"model.{foreign}={_text(_value(all_options()[foreign]))}"]
    )
    with pytest.raises(UsageError, match=f"has no option '{foreign}'"):
        validate(cfg)


def test_weight_decay_is_the_optimizers_field_fed_to_the_model():
    with pytest.raises(UsageError, match="optimizer.weight_decay"):
        apply_overrides(TrainConfig(), ["model.weight_decay=0.1"])
    cfg = train_cli.config_from_args(train_cli.build_parser().parse_args(["--model", "mlp", "--weight-decay", "5e-4"]))
    assert cfg.optimizer.weight_decay == 5e-4 and "weight_decay" not in cfg.model.options
    assert built_options(cfg)["weight_decay"] == 5e-4
    assert "weight_decay" not in built_options(cfg.replace(optimizer={"name": "adamw"}))


# ------------------------------------------------------------------------------ schema 1 -> 2


def test_a_schema_1_config_migrates_to_model_options():
    v1 = {
        "model": {"name": "mlp", "hidden": [100, 100], "dropout": 0.1, "activation": None, "shortcut": None},
        "optimizer": {"name": "sgd"},
    }
    assert upgrade_config(v1)["model"] == {"name": "mlp", "options": {"hidden": [100, 100], "dropout": 0.1}}
    cfg = TrainConfig.from_dict(v1)
    assert cfg.model.options == {"hidden": (100, 100), "dropout": 0.1}
    same = apply_overrides(TrainConfig(), ["model.name=mlp", "model.hidden=100,100", "model.dropout=0.1"])
    assert config_differences(v1, same) == []  # a schema-1 run resumes under today's flags
    assert config_differences(v1, apply_overrides(same, ["model.dropout=0.2"])) == ["model.dropout"]
    with pytest.raises(UsageError, match="mixes schema 1"):
        TrainConfig.from_dict({"model": {"name": "mlp", "hidden": [1], "options": {}}})


# What a flag with its own converter accepts, as typed; a new converter flag needs examples here.
CONVERTED_FLAG_EXAMPLES = {"image_size": ["128", "96x128", "224X160", " 64 "]}


def test_every_set_key_accepts_what_its_flag_accepts():
    parser = train_cli.build_parser()
    converted = {
        a.dest
        for a in parser._actions
        if a.dest in train_cli.FLAG_FIELDS and callable(a.type) and a.type not in (str, int, float)
    }
    assert converted == set(CONVERTED_FLAG_EXAMPLES)
    for flag, examples in CONVERTED_FLAG_EXAMPLES.items():
        path = train_cli.FLAG_FIELDS[flag]
        for text in examples:
            args = parser.parse_args(["--model", "mlp", f"--{flag.replace('_', '-')}", text])
            from_flag = validate(train_cli.config_from_args(args))
            from_set = validate(apply_overrides(TrainConfig(), ["model.name=mlp", f"{path}={text}"]))
            assert from_flag == from_set, (flag, text)
    square = apply_overrides(TrainConfig(), ["data.image_size=128"]).data.image_size
    assert square == (128, 128)
    with pytest.raises(UsageError, match="HxW with positive sizes"):
        validate(apply_overrides(TrainConfig(), ["data.image_size=1x2x3"]))


# ------------------------------------------------------------------------------ every command's --help

COMMAND_MODULES = [
    "keras_cnn.cli.train",
    "keras_cnn.cli.params",
    "keras_cnn.cli.benchmark",
    "keras_cnn.cli.evaluate",
    "keras_cnn.cli.export",
    "keras_cnn.cli.predict",
    "keras_cnn.cli.diagnose",
    "keras_cnn.cli.report",
    "keras_cnn.cli.prepare",
    "keras_cnn.cli.track",
    "tuning.tune",
    "tuning.sweep",
    "keras_cnn.cli.cache",
]


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_commands_help_describes_it_in_whole_sentences(name, capsys):
    import importlib

    module = importlib.import_module(name)
    try:
        status = module.main(["--help"])
    except SystemExit as stop:
        status = stop.code
    assert status in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    first_paragraph = " ".join(module.__doc__.strip().split("\n\n")[0].split())
    assert first_paragraph in text, (first_paragraph, text[:600])
