"""The example's text, generated (no download, no licence to track): English-like
sentences for pretraining ("the quick cat finds the dog in the garden ."), and for the
fine-tuning task the same words in another order ("in the garden the quick cat finds
the dog ."), which the pretrained model finds unlikely until it is fine-tuned."""

from __future__ import annotations

import random

ADJECTIVES = ["small", "old", "quick", "quiet", "happy", "clever", "lazy", "bright", "red", "green"]
NOUNS = ["cat", "dog", "bird", "child", "farmer", "teacher", "horse", "robot", "sailor", "baker"]
VERBS = ["sees", "follows", "helps", "finds", "likes", "watches", "calls", "meets"]
PLACES = ["garden", "market", "river", "school", "forest", "harbour"]


# The two tasks: the same words, in two orders.
PRETRAINING = "the {adjective} {subject} {verb} the {thing} in the {place} ."
TASK = "in the {place} the {adjective} {subject} {verb} the {thing} ."


def sentences(count: int, seed: int, form: str) -> list[str]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        subject, thing = rng.sample(NOUNS, 2)
        made.append(
            form.format(adjective=rng.choice(ADJECTIVES), subject=subject, verb=rng.choice(VERBS), thing=thing, place=rng.choice(PLACES))
        )
    return made


def pretraining_sentences(count: int, seed: int) -> list[str]:
    return sentences(count, seed, PRETRAINING)


def task_sentences(count: int, seed: int) -> list[str]:
    """The fine-tuning task: the place first."""
    return sentences(count, seed, TASK)
