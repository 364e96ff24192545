"""A small Dockerfile reader for the deploy tests: instructions with their continuation lines
joined, and the `pip install` of a RUN split into its options and requirements."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def instructions(path: Path) -> list[Instruction]:
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, argument = text.partition(" ")
        found.append(Instruction(keyword.upper(), argument.strip()))
    assert not pending, f"{path}: a continued instruction never ends"
    return found


@dataclass
class PipInstall:
    constraints: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)


def pip_installs(path: Path) -> list[PipInstall]:
    """Every ``pip install`` in a RUN (commands joined by ``&&`` are read separately)."""
    installs = []
    for instruction in instructions(path):
        if instruction.keyword != "RUN":
            continue
        for command in instruction.argument.split("&&"):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            install = PipInstall()
            rest = iter(words[2:])
            for word in rest:
                if word in ("--constraint", "-c"):
                    install.constraints.append(next(rest))
                elif word.startswith("-"):
                    install.options.append(word)
                else:
                    install.requirements.append(word)
            installs.append(install)
    return installs


def copies(path: Path) -> dict[str, str]:
    """``COPY`` destination -> source (flags such as ``--chown`` dropped)."""
    found = {}
    for instruction in instructions(path):
        if instruction.keyword == "COPY":
            words = [word for word in shlex.split(instruction.argument) if not word.startswith("--")]
            source, destination = words
            found[destination] = source
    return found
