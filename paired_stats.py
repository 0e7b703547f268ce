"""Paired comparisons of two configurations, per tag and per seed, with a bootstrap confidence interval and a verdict.

    from paired_stats import paired_bootstrap, verdict
    diff = ap_a - ap_b                        # (n_seeds, n_tags): the same seeds and test songs on both sides
    mean, low, high = paired_bootstrap(diff)  # 95% interval of the mean difference, 10,000 resamples, seeded
    verdict(low, high, direction=+1)          # 'reproduced', 'opposite' or 'inconclusive'

The bootstrap resamples seeds and tags independently, with replacement (a two-way crossed bootstrap): a seed is one
training run, a tag one retrieval query, and both vary. Resampling seeds s_1..s_S and tags t_1..t_T gives the mean
of diff[s_i, t_j] over the S x T drawn pairs, which equals w_seed @ diff @ w_tag with w the draw counts divided by
S and T: so every resample is one multinomial draw per axis and one small matrix product.
"""
import numpy as np


def complete_tags(diff):
    """diff (n_seeds, n_tags) -> the columns (tags) finite for every seed: a tag without a positive test song has
    no AP and is left out of every comparison, as it is out of MAP."""
    diff = np.asarray(diff, dtype=np.float64)
    if diff.ndim != 2:
        raise ValueError(f'expected a (n_seeds, n_tags) array, got shape {diff.shape}')
    return diff[:, np.isfinite(diff).all(axis=0)]


def bootstrap_means(diff, n_resamples=10000, seed=0):
    """(n_resamples,) means of diff (n_seeds, n_tags) over seeds and tags drawn with replacement."""
    diff = complete_tags(diff)
    n_seeds, n_tags = diff.shape
    if n_seeds == 0 or n_tags == 0:
        raise ValueError('no seed or no tag to resample')
    rng = np.random.default_rng(seed)
    seed_weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples) / n_seeds
    tag_weights = rng.multinomial(n_tags, np.full(n_tags, 1 / n_tags), size=n_resamples) / n_tags
    return np.einsum('rs,st,rt->r', seed_weights, diff, tag_weights)


def paired_bootstrap(diff, n_resamples=10000, seed=0, level=0.95):
    """(mean difference, low, high): the mean of diff (n_seeds, n_tags) and its percentile bootstrap interval."""
    means = bootstrap_means(diff, n_resamples, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(complete_tags(diff).mean()), float(low), float(high)


def verdict(low, high, direction):
    """direction +1: the paper finds A > B (diff = A - B > 0); -1: A < B; 0 or None: no claim to test."""
    if not direction:
        return 'no claim'
    if low > 0 or high < 0:
        return 'reproduced' if (low > 0) == (direction > 0) else 'opposite'
    return 'inconclusive'


def last_third_slope(steps, values):
    """Least-squares slope of values against steps (per 1,000 steps) over the last third of a learning curve's
    points, at least its last 2; None with fewer than 2 points."""
    order = np.argsort(np.asarray(steps, dtype=float))
    steps, values = np.asarray(steps, dtype=float)[order], np.asarray(values, dtype=float)[order]
    if len(steps) < 2:
        return None
    keep = max(2, -(-len(steps) // 3))
    return float(np.polyfit(steps[-keep:], values[-keep:], 1)[0] * 1000)
