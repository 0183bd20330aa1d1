"""Research (2026-12-04, Intel Xeon): can the transformer member get closer to the CNN, so that the
ensemble gains more over its best member? Runs the full profile's transformer recipe with one change.

    PYTHONPATH=. python bench/training/2026-12-04-transformer/transformer_variants.py VARIANT SEED REPO [ARGS]

VARIANT: "base" (the recipe as it was before 2026-12-04: one convolution per tokenizer stage), "ls" (label
smoothing 0.1, as the CNN has), "w96d2" (width 96, two encoder blocks instead of width 64 and three),
"w96d2ls" (both), "w96d3", "w128d2", "tok4" (two convolutions per tokenizer stage: 32, 32, pool, 64, 64,
pool). ARGS go on to `python -m training` (e.g. `--epochs 1 --train-size 20000` to time a variant).

tok4 was measured with a copy of training.models.transformer's builder patched in here; that builder now
takes ``extra["tokenizer_depth"]`` and builds the same model (169,963 parameters; only layer names
differ), so the variants are written as that setting.
"""

import sys
from dataclasses import replace

from training import profiles
from training.cli import main

ONE = {"tokenizer_depth": 1}
VARIANTS = {
    "base": {"model": {"extra": ONE}},
    "ls": {"label_smoothing": 0.1, "model": {"extra": ONE}},
    "w96d2": {"model": {"width": 96, "depth": 2, "extra": ONE}},
    "w96d2ls": {"label_smoothing": 0.1, "model": {"width": 96, "depth": 2, "extra": ONE}},
    "w96d3": {"model": {"width": 96, "depth": 3, "extra": ONE}},
    "w128d2": {"model": {"width": 128, "depth": 2, "extra": ONE}},
    "tok4": {"model": {"extra": {"tokenizer_depth": 2}}},
}

name, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
full = profiles.PROFILES["full"]
recipe = replace(full.recipes["transformer"], **VARIANTS[name])
profiles.PROFILES["full"] = replace(full, recipes={**full.recipes, "transformer": recipe})
sys.exit(main(["--model", "transformer", "--profile", "full", "--seed", seed, "--repo", repo, *rest]))
