"""Training in chunks: the registry's list agrees with the plug-ins, and parts are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerline.families import CHUNKED_TRAINING, FAMILIES
from training import chunked, pipeline
from training.family import ChunkedTraining, get_family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_registry_lists_exactly_the_families_whose_plugin_trains_in_chunks(family: str) -> None:
    # the DAG file reads CHUNKED_TRAINING (importing plug-ins at parse time is too heavy)
    assert (family in CHUNKED_TRAINING) == isinstance(get_family(family), ChunkedTraining)
    assert (pipeline.chunked_family(family) is not None) == (family in CHUNKED_TRAINING)


def test_a_family_with_chunks_exists() -> None:
    assert CHUNKED_TRAINING and CHUNKED_TRAINING <= set(FAMILIES)


def test_a_part_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "chunks" / "part-0000.pkl"
    chunked._write_atomically(target, b"first")
    assert target.read_bytes() == b"first"

    def dies(fd: int) -> None:  # the worker dies after writing, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", dies)
    with pytest.raises(KeyboardInterrupt):
        chunked._write_atomically(target, b"second, never seen")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["part-0000.pkl"], "no temporary file is left"
