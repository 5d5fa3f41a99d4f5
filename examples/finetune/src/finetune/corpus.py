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


def parts(rng: random.Random) -> tuple[str, str, str, str, str]:
    subject, thing = rng.sample(NOUNS, 2)
    return rng.choice(ADJECTIVES), subject, rng.choice(VERBS), thing, rng.choice(PLACES)


def pretraining_sentences(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        adjective, subject, verb, thing, place = parts(rng)
        sentences.append(f"the {adjective} {subject} {verb} the {thing} in the {place} .")
    return sentences


def task_sentences(count: int, seed: int) -> list[str]:
    """The fine-tuning task: the place first."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        adjective, subject, verb, thing, place = parts(rng)
        sentences.append(f"in the {place} the {adjective} {subject} {verb} the {thing} .")
    return sentences
