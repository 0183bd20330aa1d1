"""Research (2026-12-05, AMD EPYC): the quick profile (what `make run` trains) with one member's recipe
changed, to see whether its ensemble can beat its CNN within about 3 minutes.

    PYTHONPATH=. python bench/training/2026-12-05-quick-amd/quick_variant.py VARIANT SEED REPO [ARGS]

VARIANT: "lstm2" = the LSTM for 2 epochs instead of 1; "tf256" = the transformer in batches of 256
instead of 128 (is it overhead-bound? the quick ensemble gives it no weight). ARGS go on to
`python -m training` (default: `--model MEMBER`), e.g. `--model all` to time the whole profile.
"""

import sys
from dataclasses import replace

from training import profiles
from training.cli import main

VARIANTS = {"lstm2": ("lstm", {"epochs": 2}), "tf256": ("transformer", {"batch_size": 256})}

name, seed, repo, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
member, change = VARIANTS[name]
quick = profiles.PROFILES["quick"]
recipe = replace(quick.recipes[member], **change)
profiles.PROFILES["quick"] = replace(quick, recipes={**quick.recipes, member: recipe})
sys.exit(main(["--profile", "quick", "--seed", seed, "--repo", repo, *(rest or ["--model", member])]))
