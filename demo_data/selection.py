"""The catalogue of every usable corpus work, and the seeded choice of N of them per source."""
from collections import defaultdict

import numpy as np

from demo_data.art import art_catalogue
from demo_data.corpus import STRATA, msd_id, stable_int
from demo_data.folk import aird_catalogue, essen_catalogue, misc_folk_catalogue, oneills_catalogue, ryans_catalogue


def catalogue(art_artist='composer'):
    works = (essen_catalogue() + oneills_catalogue() + ryans_catalogue() + aird_catalogue()
             + misc_folk_catalogue() + art_catalogue(art_artist))
    unique = {w['work_id']: w for w in reversed(works)}  # a file matched by two patterns: the first wins
    return sorted(unique.values(), key=lambda w: w['work_id'])


def quotas(available, n_songs):
    """Songs per stratum: largest-remainder shares of n_songs, capped by what is available."""
    want = {s: STRATA[s] * n_songs for s in STRATA}
    quota = {s: min(int(want[s]), available.get(s, 0)) for s in STRATA}
    for s in sorted(STRATA, key=lambda s: int(want[s]) - want[s]):  # largest remainders first
        if sum(quota.values()) < n_songs and quota[s] < available.get(s, 0):
            quota[s] += 1
    while sum(quota.values()) < n_songs:  # caps left songs over: give them to strata with spare works
        spare = [s for s in sorted(STRATA, key=lambda s: -STRATA[s]) if quota[s] < available.get(s, 0)]
        if not spare:
            break
        quota[spare[0]] += 1
    return quota


def select_works(works, n_songs, seed):
    """Seeded choice per stratum, round-robin over its balance key (the collector or composer of a
    tune, the region of a neighbour country's song) so that tags span many artists and rarer
    regions are represented; independent of catalogue order (works are sorted by id first)."""
    rng = np.random.default_rng(stable_int('select', seed))
    by_stratum = defaultdict(list)
    for work in works:
        by_stratum[work['source']].append(work)
    chosen = []
    for stratum, quota in quotas({s: len(w) for s, w in by_stratum.items()}, n_songs).items():
        groups = defaultdict(list)
        for i in rng.permutation(len(by_stratum[stratum])):
            work = by_stratum[stratum][i]
            groups[work.get('balance', '')].append(work)
        queues = [groups[key] for key in sorted(groups)]
        picked = []
        while len(picked) < quota:
            for queue in queues:
                if queue and len(picked) < quota:
                    picked.append(queue.pop())
        chosen += picked
    for work in chosen:
        work['track_id'] = msd_id('TR', work['work_id'])
    return sorted(chosen, key=lambda w: w['track_id'])
