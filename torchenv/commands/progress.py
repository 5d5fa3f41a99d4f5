"""Progress per variant for multi-variant runs (`build --all`, `lock --all`): one rich
bar on stderr, with BuildKit's own output streaming above it."""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from torchenv.model.matrix import Variant


def per_variant(variants: list[Variant], verb: str) -> Iterator[Variant]:
    if len(variants) < 2:
        yield from variants
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), redirect_stderr=True, redirect_stdout=True) as progress:
        task = progress.add_task(verb, total=len(variants))
        for variant in variants:
            progress.update(task, description=f"{verb} {variant.build_name} ({variant.platform})")
            yield variant
            progress.advance(task)
