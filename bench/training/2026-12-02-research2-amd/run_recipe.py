"""Research: one member of the full profile with some recipe fields changed, swapped in before the CLI runs.

python run_recipe.py REPO MODEL FIELD=VALUE ...   (from the repository root)
e.g. python run_recipe.py /tmp/r cnn erase=0.5 epochs=13; model fields go as model.NAME=VALUE.
"""

import ast
import sys
from dataclasses import replace

from training import profiles
from training.cli import main

repo, model = sys.argv[1], sys.argv[2]
full = profiles.PROFILES["full"]
recipes = dict(full.recipes)
changes: dict = {}
model_changes = dict(recipes[model].model)
for item in sys.argv[3:]:
    key, value = item.split("=", 1)
    parsed = ast.literal_eval(value)
    if key.startswith("model."):
        model_changes[key.removeprefix("model.")] = parsed
    else:
        changes[key] = parsed
recipes[model] = replace(recipes[model], model=model_changes, **changes)
profiles.PROFILES["full"] = replace(full, recipes=recipes)
print(model, "recipe:", recipes[model], flush=True)
sys.exit(main(["--model", model, "--profile", "full", "--repo", repo]))
