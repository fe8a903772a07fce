"""automl from Python, as in a notebook: run a study, read its trials as a table, take the best recipe, and train it
in a loop of your own. Each block is a notebook cell; run the whole file with `python studies/from_python.py`.

It runs the quickstart (digits, a small CNN, warmup / cosine / label smoothing searched) with budgets in steps, so
it does the same training on any machine, in about a minute on 2 cores. AUTOML_STORAGE picks the database
(default: from_python.db here).
"""

import os

import torch

import automl
from automl.train.loader import Loader

HERE = os.path.dirname(os.path.abspath(__file__))
STORAGE = os.environ.get("AUTOML_STORAGE", "sqlite:///from_python.db")

# %% Run (or resume) the study: the same checks and errors as `automl run`, nothing printed (progress=True shows
# the command's bars).
result = automl.run(os.path.join(HERE, "quickstart.toml"), storage=STORAGE, study_name="from-python",
                    trial_budget="40steps", n_trials=6)
print(result)

# %% One row per trial: value with its 95% interval, tricks as a string and one column each, params under their
# trick, steps, device-seconds, inference cost, end reason.
trials = result.trials
print(trials[["number", "state", "value", "value_low", "value_high", "tricks", "train.lr", "steps"]])
print("mean error with and without cosine:", trials.groupby("cosine")["value"].mean().round(4).to_dict())

# %% The best configuration, as `automl best` ranks them (by the mean over its seeds), and its recipe.
best = result.best()
print(f"best: trial {best.number}, tricks {best.tricks}, error {best.value:.4f}, seeds {best.seeds}")
recipe = result.export(path="from-python-best.toml")
print(recipe)

# %% The recipe in your own loop: your model, optimizer and batches; the recipe's hooks where automl calls them.
data = recipe.load_data()
torch.manual_seed(recipe.seed)
model = recipe.build_model(data)
optimizer = recipe.make_optimizer(model.parameters())
batches = Loader(data.train, recipe.train.batch_size, augment=recipe.train.augment, flip=recipe.train.flip,
                 padding=recipe.train.crop_padding, seed=recipe.seed)
bound = recipe.attach(model, optimizer, budget="60steps", steps_per_epoch=len(batches), train_data=data.train,
                      num_classes=data.num_classes)
while not bound.done:
    for x, y in batches:
        if bound.done:
            break
        x, y = bound.before_step(x, y)          # the step's LR, the tricks' batch transforms
        loss = bound.criterion(model(x), y)     # the loss as the tricks wrap it (label smoothing)
        bound.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        bound.after_backward()                  # the tricks' gradient hooks
        bound.optimizer.step()
        bound.after_step(loss)                  # averages, snapshots, the step counted
bound.end()
wrong = sum(int((bound.predict(x).argmax(1) != y).sum()) for x, y in data.val.batches(256))
print(f"your loop: validation error {wrong / len(data.val):.4f} after {bound.run.step} steps at lr {bound.lr:.4g}")
