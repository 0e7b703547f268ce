"""Per-tag retrieval metrics, vectorised over all tags at once.

    from metrics import retrieval_metrics
    per_tag = retrieval_metrics(scores, labels)   # scores, labels: (n_tags, n_songs)
    per_tag['ap'].mean()                          # MAP

ROC-AUC and AP equal scikit-learn's `roc_auc_score` / `average_precision_score` per tag (ties included); P@k is
the share of relevant songs among the k best-scored, ties broken as the original's `np.argsort(scores)[::-1][:k]`
did with a stable sort: among equal scores the song of the higher index ranks first. A tag with no relevant (or no irrelevant) song among the
evaluated songs has no ROC-AUC or AP: it gets NaN and is left out of the means (`nanmean`).
"""
import numpy as np
from scipy.stats import rankdata


def cosine_scores(tag_embs, song_embs):
    """(n_tags, n_songs) cosine similarities; works on torch tensors on any device."""
    import torch.nn.functional as F
    return F.normalize(tag_embs, dim=-1) @ F.normalize(song_embs, dim=-1).T


def precision_at_k(scores, labels, k):
    """The original's rule, all rows at once: ascending stable sort, reversed, so a tie at the cut keeps the
    later songs (an argpartition would pick among tied songs arbitrarily, and P@k would depend on it)."""
    k = min(k, scores.shape[1])
    top = np.argsort(scores, axis=1, kind='stable')[:, ::-1][:, :k]
    return np.take_along_axis(labels, top, axis=1).mean(axis=1)


def roc_auc(scores, labels):
    """Mann-Whitney form of the AUC with average ranks for ties, which is exactly sklearn's trapezoidal AUC."""
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    ranks = rankdata(scores, axis=1)
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def average_precision(scores, labels):
    """sum over distinct thresholds of (R_n - R_{n-1}) * P_n, with tied scores forming one threshold."""
    n_tags, n_songs = scores.shape
    order = np.argsort(-scores, axis=1, kind='stable')
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    sorted_labels = np.take_along_axis(labels, order, axis=1)
    true_positives = np.cumsum(sorted_labels, axis=1)
    precision = true_positives / np.arange(1, n_songs + 1)
    # every position takes the precision at the end of its run of tied scores
    is_run_end = np.ones_like(sorted_scores, dtype=bool)
    is_run_end[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    run_end = np.where(is_run_end, np.arange(n_songs), n_songs)
    run_end = np.minimum.accumulate(run_end[:, ::-1], axis=1)[:, ::-1]
    precision_at_run_end = np.take_along_axis(precision, run_end, axis=1)
    n_pos = labels.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        ap = (sorted_labels * precision_at_run_end).sum(axis=1) / n_pos
    ap[(n_pos == 0) | (n_pos == n_songs)] = np.nan
    return ap


def retrieval_metrics(scores, labels, k=10):
    """Per-tag P@k, ROC-AUC and AP for a (n_tags, n_songs) score matrix and 0/1 relevance of the same shape."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f'scores {scores.shape} and labels {labels.shape} differ in shape')
    return {'p@10' if k == 10 else f'p@{k}': precision_at_k(scores, labels, k),
            'roc_auc': roc_auc(scores, labels),
            'ap': average_precision(scores, labels)}


def summarise(per_tag, tag_groups=None):
    """Means over tags (`map` = mean AP), overall and per group (category, seen/unseen...)."""
    def means(mask):
        out = {}
        for name, values in per_tag.items():
            picked = values[mask]
            key = 'map' if name == 'ap' else name
            out[key] = float(np.nanmean(picked)) if np.isfinite(picked).any() else float('nan')
        out['n_tags'] = int(mask.sum())
        return out

    n_tags = len(next(iter(per_tag.values())))
    summary = {'all': means(np.ones(n_tags, dtype=bool))}
    for group_name, groups in (tag_groups or {}).items():
        groups = np.asarray(groups)
        summary[group_name] = {g: means(groups == g) for g in sorted(set(groups.tolist()))}
    return summary


def format_summary(summary, title):
    """The TEST table: MAP, P@10 and ROC-AUC overall and per tag group, then the random-score baseline."""
    lines = [f'\n{title}', f'{"":<24}{"MAP":>8}{"P@10":>8}{"ROC-AUC":>9}{"tags":>6}']
    rows = [('all', summary['all'])] + [(f'{g}: {k}', v) for g, d in summary.items()
                                         if g not in ('all', 'random_baseline') for k, v in d.items()]
    for name, m in rows:
        lines.append(f'{name:<24}{m["map"]:>8.4f}{m["p@10"]:>8.4f}{m["roc_auc"]:>9.4f}{m["n_tags"]:>6}')
    baseline = summary.get('random_baseline', {}).get('map')
    if baseline is not None:
        lines.append(f'{"random scores (expected)":<24}{baseline:>8.4f}{baseline:>8.4f}{0.5:>9.4f}')
    return '\n'.join(lines)
