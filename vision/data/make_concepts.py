"""Regenerates concepts.txt, the zero-shot vocabulary of the CLIP encoders (a maintainer
script; needs `pip install timm wordfreq`, neither of which askgpt itself uses).

Source: the WordNet lemmas of ImageNet-12k's synsets (timm ships the lists), one per
synset: the first lemma that is lowercase (not a proper name), at most two words,
letters only, and common in English text (wordfreq's Zipf frequency: >= 3.0 for a word,
>= 2.2 for a two-word phrase, whose frequency wordfreq estimates lower). That keeps
everyday objects, animals, foods, places and people and drops most Latin-named species.
"""

from __future__ import annotations

import sys
from pathlib import Path

BLOCKED = {"rape", "slut", "whore", "nigger", "fag", "faggot", "bitch", "bastard"}


def concepts() -> list[str]:
    import timm
    from wordfreq import zipf_frequency

    info = Path(timm.__file__).parent / "data" / "_info"
    lemmas = dict(line.rstrip("\n").split("\t", 1)
                  for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    chosen: dict[str, None] = {}
    for synset in (info / "imagenet12k_synsets.txt").read_text().split():
        for lemma in lemmas[synset].split(", "):
            word = lemma.strip()
            n_words = len(word.split())
            if (not word or word.lower() != word or n_words > 2 or word in BLOCKED
                    or not all(c.isalpha() or c in " -'" for c in word)):
                continue
            z = zipf_frequency(word, "en")
            if (n_words == 1 and z >= 3.0) or (n_words == 2 and z >= 2.2):
                chosen.setdefault(word)
                break
    return sorted(chosen)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("concepts.txt")
    words = concepts()
    out.write_text("\n".join(words) + "\n")
    print(f"{len(words)} concepts -> {out}")
