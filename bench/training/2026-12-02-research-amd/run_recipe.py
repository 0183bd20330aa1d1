"""Research: one member of the full profile with its shifts and random erasing changed, swapped in before the CLI runs.

python run_recipe.py SHIFT_PIXELS ERASE REPO [MODEL]   (from the repository root; MODEL: cnn by default)
"""

import sys
from dataclasses import replace

from training import profiles
from training.cli import main

changes = dict(shift_pixels=float(sys.argv[1]), erase=float(sys.argv[2]))
full = profiles.PROFILES["full"]
recipes = dict(full.recipes)
model = sys.argv[4] if len(sys.argv) > 4 else "cnn"
recipes[model] = replace(recipes[model], **changes)
profiles.PROFILES["full"] = replace(full, recipes=recipes)
print(model, "recipe:", recipes[model], flush=True)
sys.exit(main(["--model", model, "--profile", "full", "--repo", sys.argv[3]]))
