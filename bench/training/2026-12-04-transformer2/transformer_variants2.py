"""Research (2026-12-04, Intel Xeon, second round): the transformer with two convolutions per tokenizer
stage (the full profile's since 9a77009) overfits a little (train 96.5% against 94.0% validation at its
last epoch), and makes a full run about 5.5 minutes longer. Two questions, one change each:

    PYTHONPATH=. python bench/training/2026-12-04-transformer2/transformer_variants2.py VARIANT SEED REPO [ARGS]

VARIANT: "d2" (two encoder blocks instead of three: does it keep the accuracy for less time?),
"shift1" / "shift2" (random shifts of up to 1 or 2 pixels each way, which the full profile turned off
when every member underfitted; does the now-overfitting transformer gain, and does it err less like
the CNN, which trains without shifts?). ARGS go on to `python -m training`.
"""

import sys
from dataclasses import replace

from training import profiles
from training.cli import main

VARIANTS = {
    "d2": {"model": {"depth": 2}},
    "shift1": {"shift_pixels": 1.0},
    "shift2": {"shift_pixels": 2.0},
}

name, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
full = profiles.PROFILES["full"]
recipe = replace(full.recipes["transformer"], **VARIANTS[name])
profiles.PROFILES["full"] = replace(full, recipes={**full.recipes, "transformer": recipe})
sys.exit(main(["--model", "transformer", "--profile", "full", "--seed", seed, "--repo", repo, *rest]))
