"""Research (2026-12-05, AMD EPYC): the full profile's transformer overfits a little (train 96.6% against
93.8% validation at its last epoch in full10), as the CNN did before label smoothing 0.1 gave it about
0.2 test points (bench/training/2026-12-03-smoothing-amd). Does the same help the transformer, and with
it the ensemble?

    PYTHONPATH=. python bench/training/2026-12-05-transformer-smoothing/transformer_variants3.py \
        VARIANT SEED REPO [ARGS]

VARIANT: "ls01" (label smoothing 0.1), the one change to the full profile's transformer recipe; ARGS go
on to `python -m training`.
"""

import sys
from dataclasses import replace

from training import profiles
from training.cli import main

VARIANTS = {
    "ls01": {"label_smoothing": 0.1},
}

name, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
full = profiles.PROFILES["full"]
recipe = replace(full.recipes["transformer"], **VARIANTS[name])
profiles.PROFILES["full"] = replace(full, recipes={**full.recipes, "transformer": recipe})
sys.exit(main(["--model", "transformer", "--profile", "full", "--seed", seed, "--repo", repo, *rest]))
