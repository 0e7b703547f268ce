"""The SIMULATED listening data (Echo Nest Taste Profile format) that step 3 factorises into item factors."""
import hashlib
from collections import defaultdict

import numpy as np

from demo_data.corpus import stable_int
from file_io import atomic_write_bytes


def simulate_taste_profile(path, songs, seed):
    """SIMULATED Echo Nest Taste Profile lines 'user<TAB>track<TAB>play_count'. Each user has 1-3
    favourite scenes (a region, an era or a collection) and listens mostly within them; song
    popularity is log-normal; play counts are 1 + Poisson. Instrument and tempo play no part, so
    the item factors carry culture, not sound."""
    rng = np.random.default_rng(stable_int('taste', seed))
    scenes = defaultdict(list)
    for i, song in enumerate(songs):
        keys = {f'{c}:{t}' for c, _, t in song['tags'] if c in ('location', 'era')} | {f'source:{song["source"]}'}
        for key in sorted(keys):
            scenes[key].append(i)
    scene_names = sorted(scenes)
    scene_weight = np.sqrt([len(scenes[s]) for s in scene_names])
    scene_weight /= scene_weight.sum()
    popularity = rng.lognormal(0, 1, len(songs))
    n_users = max(100, 3 * len(songs))
    plays = defaultdict(int)
    for user in range(n_users):
        favourites = rng.choice(len(scene_names), size=rng.integers(1, 4), replace=False, p=scene_weight)
        liked = np.unique(np.concatenate([scenes[scene_names[f]] for f in favourites]))
        n_listens = int(np.clip(rng.lognormal(2.8, 0.6), 3, 150))
        for _ in range(n_listens):
            in_taste = rng.random() < 0.85
            pool = liked if in_taste else np.arange(len(songs))
            weights = popularity[pool] / popularity[pool].sum()
            song = pool[rng.choice(len(pool), p=weights)]
            plays[user, song] += 1 + rng.poisson(2.0 if in_taste else 0.3)
    listened = {song for _, song in plays}
    for song in range(len(songs)):  # every song needs a listener to get an item factor
        if song not in listened:
            plays[int(rng.integers(n_users)), song] += 1
    user_ids = [hashlib.sha1(f'demo-user-{seed}-{u}'.encode()).hexdigest() for u in range(n_users)]
    lines = [f'{user_ids[u]}\t{songs[s]["track_id"]}\t{count}\n' for (u, s), count in sorted(plays.items())]
    atomic_write_bytes(path, ''.join(lines).encode())
    return {'users': n_users, 'lines': len(lines), 'plays': int(sum(plays.values())), 'scenes': len(scene_names)}
