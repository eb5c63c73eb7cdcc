"""unetsr.core.torchrun: the one strict reading of torchrun's environment."""

from __future__ import annotations

import pytest

from unetsr.core.torchrun import Rank, TorchrunError, from_environment


@pytest.mark.parametrize("env, rank", [
    ({}, Rank()),
    ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, Rank(1, 4, 1, 2)),
    ({"RANK": "3", "WORLD_SIZE": "4"}, Rank(3, 4, 3, 4)),  # no LOCAL_*: one machine
    ({"WORLD_SIZE": "1"}, Rank()),
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1", "OTHER": "x"}, Rank()),
])
def test_well_formed_environments(env: dict[str, str], rank: Rank) -> None:
    assert from_environment(env) == rank
    assert rank.distributed == (rank.world > 1)


@pytest.mark.parametrize("env, message", [
    ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 must be below WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK='-1' is not a whole number"),
    ({"RANK": "", "WORLD_SIZE": "2"}, "RANK='' is not a whole number"),
    ({"RANK": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "3"}, "LOCAL_WORLD_SIZE=3 must be from 1 to WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_WORLD_SIZE=2 is set but LOCAL_RANK is not"),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "2"},
     "LOCAL_RANK=2 must be below LOCAL_WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "2\n"}, r"WORLD_SIZE='2\\n' is not a whole number"),
])
def test_malformed_environments_are_one_line_errors_not_one_process(env: dict[str, str], message: str) -> None:
    with pytest.raises(TorchrunError) as error:
        from_environment(env)
    assert str(error.value) == f"torchrun environment: {message}"
    assert "\n" not in str(error.value)


def test_it_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TorchrunError, match="WORLD_SIZE='two'"):
        from_environment()
