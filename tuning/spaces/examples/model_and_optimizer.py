"""A Python search space: the model, the optimizer and its learning rate, chosen together.

    python scripts/tune.py --space tuning/spaces/examples/model_and_optimizer.py --data-dir ../shared/data/mnist

Every hyperparameter is named by the config path it sets; the returned dict maps those paths to
this trial's values. Conditional hyperparameters (the MLP's width) exist only where they apply.
"""


def space(hp):
    model = hp.Choice("model.name", ["mlp", "cnn"])
    values = {
        "model.name": model,
        "optimizer.name": hp.Choice("optimizer.name", ["sgd", "adam"]),
        "optimizer.learning_rate": hp.Float("optimizer.learning_rate", 1e-3, 0.1, sampling="log"),
    }
    if model == "mlp":
        values["model.hidden"] = hp.Choice("model.hidden", ["100", "256,256"])
    return values
