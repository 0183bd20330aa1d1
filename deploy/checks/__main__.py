"""``python -m deploy.checks [--repo PATH]``: check the deployment files against an exported repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.checks.common import ROOT, Problem
from deploy.checks.compose import check_compose, default_env
from deploy.checks.k8s import check_k8s
from deploy.checks.kustomize import check_kustomize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.checks", description=__doc__)
    parser.add_argument("--repo", type=Path, help="exported model repository (what is mounted at /models)")
    arguments = parser.parse_args(argv)
    repo = arguments.repo
    if repo is not None and not repo.is_dir():
        print(f"--repo {repo} is not a folder", file=sys.stderr)
        return 2
    problems: list[Problem] = []
    try:
        from deploy.checks.dockerfile import check_dockerfile, check_dockerignore

        problems += check_dockerfile(ROOT / "Dockerfile")
        problems += check_dockerignore(ROOT / ".dockerignore", ROOT / "Dockerfile")
    except ImportError:
        print("Dockerfile not checked: pip install dockerfile", file=sys.stderr)
    problems += check_compose(ROOT / "deploy" / "docker-compose.yml", default_env(repo), repo_known=repo is not None)
    problems += check_k8s(ROOT / "deploy" / "k8s", repo)
    built, checked = check_kustomize(ROOT / "deploy" / "k8s")
    problems += built
    print(f"kubectl kustomize deploy/k8s: {checked}", file=sys.stderr)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" + ("" if repo else " (no --repo: the exported files were not looked at)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
