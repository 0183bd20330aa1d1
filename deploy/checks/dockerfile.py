"""The Dockerfile (parsed with buildkit's own parser, PyPI ``dockerfile``) and .dockerignore."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.checks.common import ROOT, TF_PACKAGES, Problem, display, image_is_pinned

TARGETS = ("gateway", "modelserver", "trainer", "loadtest")
SERVICES = {"gateway": "/healthz", "modelserver": "grpc_health"}  # what each HEALTHCHECK must call
NO_TENSORFLOW = ("gateway", "loadtest")
ROOT_USERS = ("root", "0")


@dataclass
class Stage:
    name: str
    base: str
    line: int
    commands: list[Any] = field(default_factory=list)


def parse_stages(path: Path) -> list[Stage]:
    import dockerfile  # PyPI "dockerfile": buildkit's parser

    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd.upper() == "FROM":
            words = [word for word in command.value if not word.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0], command.start_line))
        elif stages:
            stages[-1].commands.append(command)
    return stages


def _chain(stages: Sequence[Stage], name: str) -> list[Stage]:
    """The stage, the stages it is built FROM, and those it copies from, recursively."""
    by_name = {stage.name: stage for stage in stages}
    seen: list[Stage] = []
    pending = [name]
    while pending:
        stage = by_name.get(pending.pop())
        if stage is None or stage in seen:
            continue
        seen.append(stage)
        pending.append(stage.base)
        for command in stage.commands:
            pending += [flag.split("=", 1)[1] for flag in command.flags if flag.startswith("--from=")]
    return seen


def _lineage(stages: Sequence[Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM (not those it copies from): where USER is inherited."""
    by_name = {stage.name: stage for stage in stages}
    lineage = []
    stage = by_name.get(name)
    while stage is not None and stage not in lineage:
        lineage.append(stage)
        stage = by_name.get(stage.base)
    return lineage


def check_dockerfile(path: Path, pyproject: Path = ROOT / "pyproject.toml") -> list[Problem]:
    file = display(path)
    stages = parse_stages(path)
    names = {stage.name for stage in stages}
    problems = [Problem(file, f"FROM ... AS {target}", "no such stage") for target in TARGETS if target not in names]
    for stage in stages:
        if stage.base not in names and not image_is_pinned(stage.base):
            problems.append(Problem(file, f"line {stage.line}: FROM {stage.base}", "base image is not pinned to a tag"))
        for command in stage.commands:
            problems += _check_caches(file, stage, command)
    for target in TARGETS:
        if target not in names:
            continue
        users = [c for stage in _lineage(stages, target) for c in reversed(stage.commands) if c.cmd.upper() == "USER"]
        if not users or users[0].value[0].split(":")[0] in ROOT_USERS:
            problems.append(Problem(file, f"stage {target}: USER", "the final user must be set and not root"))
        health = [c for c in _lineage(stages, target)[0].commands if c.cmd.upper() == "HEALTHCHECK"]
        if not health:
            problems.append(Problem(file, f"stage {target}: HEALTHCHECK", "missing (HEALTHCHECK NONE for a batch job)"))
        elif target in SERVICES and SERVICES[target] not in health[-1].original:
            problems.append(Problem(file, f"stage {target}: HEALTHCHECK", f"does not call {SERVICES[target]}"))
    for target in NO_TENSORFLOW:
        for stage in _chain(stages, target):
            for command in stage.commands:
                if command.cmd.upper() == "RUN" and _installs_tensorflow(command.original):
                    message = f"installs TensorFlow (an ml/all extra or a TF package), but {target} must not"
                    problems.append(Problem(file, f"line {command.start_line}: stage {stage.name}", message))
    problems += _check_base_dependencies(pyproject)
    return problems


def _installs_tensorflow(run: str) -> bool:
    if "pip install" not in run:
        return False
    if re.search(r"\[[^\]]*\b(ml|all)\b[^\]]*\]", run):
        return True
    words = shlex.split(run.replace("&&", " "), posix=True)
    return any(re.split(r"[<>=~!\[; ]", word, maxsplit=1)[0].lower() in TF_PACKAGES for word in words)


def _check_caches(file: str, stage: Stage, command: Any) -> list[Problem]:
    text = command.original
    where = f"line {command.start_line}: stage {stage.name}"
    problems = []
    if command.cmd.upper() == "RUN" and "pip install" in text and "--no-cache-dir" not in text:
        problems.append(Problem(file, where, "pip install without --no-cache-dir"))
    if command.cmd.upper() == "RUN" and "apt-get install" in text and "rm -rf /var/lib/apt/lists" not in text:
        problems.append(Problem(file, where, "apt-get install without removing /var/lib/apt/lists in the same RUN"))
    if command.cmd.upper() == "RUN" and re.search(r"apt-get install[^&]*\b(build-essential|gcc|g\+\+)\b", text):
        problems.append(Problem(file, where, "installs a compiler; build in a builder stage instead"))
    return problems


def _check_base_dependencies(pyproject: Path) -> list[Problem]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    problems = []
    for requirement in project.get("dependencies", []):
        name = re.split(r"[<>=~!\[; ]", requirement, maxsplit=1)[0].lower()
        if name in TF_PACKAGES:
            message = f"{requirement} is a base dependency, so the gateway image would install it"
            problems.append(Problem(display(pyproject), "project.dependencies", message))
    return problems


def dockerignore_excludes(patterns: Sequence[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = _glob(pattern.strip().strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


def _glob(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def check_dockerignore(path: Path, dockerfile_path: Path) -> list[Problem]:
    file = display(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    problems = []
    for kept_out in ("models/cnn/1/saved_model.pb", ".venv/bin/python", "bench/results/x.json", ".git/HEAD"):
        if not dockerignore_excludes(patterns, kept_out):
            problems.append(Problem(file, kept_out.split("/")[0], "is sent to the build context"))
    needed = ["serving/protos/tfserving.binpb"]
    for stage in parse_stages(dockerfile_path):
        for command in stage.commands:
            if command.cmd.upper() in ("COPY", "ADD") and not any(f.startswith("--from=") for f in command.flags):
                needed += [source for source in command.value[:-1]]
    for source in needed:
        if dockerignore_excludes(patterns, source) or dockerignore_excludes(patterns, source.rstrip("/") + "/x.py"):
            problems.append(Problem(file, source, f"is excluded but {display(dockerfile_path)} copies it"))
    return problems
