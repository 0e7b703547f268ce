"""Step 3's own item factors: ALS (implicit) on a taste profile, seeded, on the confidence matrix of Hu et al."""
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_fixtures import pipeline, raw_data  # noqa: E402, F401  (fixtures)

import step3_taste_profile  # noqa: E402


def test_step3_als_from_taste_profile_is_seeded(raw_data, pipeline, tmp_path):
    data_path = tmp_path / 'data'
    shutil.copytree(pipeline, data_path)
    args = ['run', str(data_path), '--taste_profile', str(raw_data.path / 'taste_profile.tsv'),
            '--factors', '4', '--iterations', '3', '--prefix', 'sub_']
    for name in ('train_ids.npy', 'valid_ids.npy', 'test_ids.npy', 'binaries.npy'):
        shutil.copy(data_path / name, data_path / f'sub_{name}')
    assert step3_taste_profile.main(args) == 0
    first = np.load(data_path / 'sub_ix_to_cf.npy')
    assert first.shape == (len(np.load(data_path / 'binaries.npy')), 4) and first.any(axis=1).all()
    assert (data_path / 'sub_item_factors_MSD.npy').exists() and (data_path / 'sub_items_index_MSD.tsv').exists()
    assert step3_taste_profile.main(args) == 0
    np.testing.assert_array_equal(np.load(data_path / 'sub_ix_to_cf.npy'), first)


def test_step3_als_sums_repeated_plays_then_takes_the_confidence(raw_data):
    """c = 1 + alpha * log1p(plays) (or 1 + alpha * plays) of the plays summed over a (user, item)'s lines, and ALS
    is fit on exactly that matrix."""
    from implicit.cpu.als import AlternatingLeastSquares
    path = raw_data.path / 'taste_profile.tsv'
    totals = Counter()
    for line in path.read_text().splitlines():
        user, item, count = line.split('\t')
        totals[user, item] += int(count)
    lines = step3_taste_profile.read_taste_profile(str(path))
    assert len(totals) < len(lines)  # the fixture repeats (user, item) pairs
    users = sorted({user for user, _ in totals})
    for confidence, transform in (('log', np.log1p), ('linear', np.asarray)):
        factors, items, matrix = step3_taste_profile.factorise(lines, 4, 3, 0.01, 2.0, confidence, 0, 1)
        expected = np.zeros((len(users), len(items)), dtype=np.float32)
        for (user, item), count in totals.items():
            expected[users.index(user), list(items).index(item)] = 1 + 2.0 * transform(float(count))
        np.testing.assert_allclose(matrix.toarray(), expected, rtol=1e-6)
        als = AlternatingLeastSquares(factors=4, regularization=0.01, alpha=1.0, iterations=3, random_state=0,
                                      num_threads=1)
        als.fit(type(matrix)(expected), show_progress=False)
        np.testing.assert_allclose(factors, als.item_factors, rtol=1e-4, atol=1e-5)
