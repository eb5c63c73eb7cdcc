"""torchrun's environment read once, strictly: this process's rank among the workers, or a one-line error.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE for each worker. A malformed set
(`RANK=5 WORLD_SIZE=2`, `WORLD_SIZE=two`) is an error, never quietly one process: that would make every
rank do all the work. No torch here, so `infer`, `train` and the web page can all read it cheaply.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from unetsr.core.errors import UnetsrError, one_line

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class TorchrunError(UnetsrError):
    """torchrun's environment variables contradict each other or are not whole numbers."""


@dataclass(frozen=True)
class Rank:
    """This process's place among torchrun's workers: (0, 1, 0, 1) when run on its own."""

    rank: int = 0
    world: int = 1
    local: int = 0
    local_world: int = 1

    @property
    def distributed(self) -> bool:
        """Whether there are other workers to share the work with."""
        return self.world > 1


def from_environment(environ: Mapping[str, str] | None = None) -> Rank:
    """The Rank that RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE describe (os.environ by default);
    Rank() when none is set; TorchrunError naming the variable when they are malformed or contradict.

    WORLD_SIZE is required once any is set, RANK once WORLD_SIZE > 1; LOCAL_WORLD_SIZE defaults to
    WORLD_SIZE and LOCAL_RANK to RANK (one machine), as other launchers may leave them out."""
    env = os.environ if environ is None else environ
    given = {name: env[name] for name in VARIABLES if name in env}
    if not given:
        return Rank()
    values = {name: _whole(name, text) for name, text in given.items()}
    if "WORLD_SIZE" not in values:
        raise TorchrunError(f"torchrun environment: {_shown(given)} is set but WORLD_SIZE is not")
    world = values["WORLD_SIZE"]
    if world < 1:
        raise TorchrunError(f"torchrun environment: WORLD_SIZE={world} must be at least 1")
    if "RANK" not in values and world > 1:
        raise TorchrunError(f"torchrun environment: WORLD_SIZE={world} is set but RANK is not")
    rank = values.get("RANK", 0)
    if rank >= world:
        raise TorchrunError(f"torchrun environment: RANK={rank} must be below WORLD_SIZE={world}")
    local_world = values.get("LOCAL_WORLD_SIZE", world)
    if not 1 <= local_world <= world:
        raise TorchrunError(f"torchrun environment: LOCAL_WORLD_SIZE={local_world} must be from 1 to "
                            f"WORLD_SIZE={world}")
    if "LOCAL_RANK" not in values and local_world not in (1, world):
        raise TorchrunError(f"torchrun environment: LOCAL_WORLD_SIZE={local_world} is set but LOCAL_RANK is not")
    local = values.get("LOCAL_RANK", rank if local_world == world else 0)
    if local >= local_world:
        raise TorchrunError(f"torchrun environment: LOCAL_RANK={local} must be below LOCAL_WORLD_SIZE={local_world}")
    return Rank(rank, world, local, local_world)


def _whole(name: str, text: str) -> int:
    """A variable's value as a whole number >= 0 (decimal digits only), or TorchrunError naming it."""
    if not (text.isascii() and text.isdecimal()):
        raise TorchrunError(f"torchrun environment: {name}={one_line(text)!r} is not a whole number")
    return int(text)


def _shown(given: Mapping[str, str]) -> str:
    """The variables that are set, as NAME=value, for messages."""
    return " ".join(f"{name}={one_line(value)}" for name, value in given.items())
