"""Metrics: per tag against scikit-learn (ties included), P@k's ties broken as the original's, and the means per
tag group."""
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, roc_auc_score

from metrics import retrieval_metrics, summarise


def test_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.standard_normal((20, 300)), 1)  # rounding makes many ties
    labels = (rng.random((20, 300)) < 0.15).astype(float)
    per_tag = retrieval_metrics(scores, labels)
    for i in range(20):
        assert per_tag['roc_auc'][i] == pytest.approx(roc_auc_score(labels[i], scores[i]), abs=1e-6)
        assert per_tag['ap'][i] == pytest.approx(average_precision_score(labels[i], scores[i]), abs=1e-6)
        top10 = np.argsort(scores[i], kind='stable')[::-1][:10]  # the original's rule, ties included
        assert per_tag['p@10'][i] == pytest.approx(precision_score(labels[i], np.isin(np.arange(300), top10)))
    assert sum(np.sort(row)[-10] == np.sort(row)[-11] for row in scores) >= 10  # most rows tie across the cut


def test_precision_at_k_breaks_ties_as_the_original():
    """Songs 1-3 tie for the second place: argsort(...)[::-1] takes song 3 (a stable sort's last) first."""
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]] * 3)
    labels = np.array([[0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]])
    assert retrieval_metrics(scores, labels, k=2)['p@2'].tolist() == [0.5, 0.0, 0.0]
    assert retrieval_metrics(scores, labels, k=3)['p@3'].tolist() == [1 / 3, 0.0, 1 / 3]


def test_metrics_tag_without_positives_is_nan_and_left_out():
    """Rows without a positive or without a negative have no AUC or AP, silently; one positive or one negative is
    enough."""
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.2, 0.3, 0.1], [0.4, 0.3, 0.6], [0.4, 0.3, 0.6]])
    labels = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 1, 0], [0, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no numpy warning for the 0 / 0 of the rows without an AUC
        per_tag = retrieval_metrics(scores, labels)
    assert np.isnan(per_tag['ap'][1:3]).all() and np.isnan(per_tag['roc_auc'][1:3]).all()
    for i in (0, 3, 4):
        assert per_tag['roc_auc'][i] == pytest.approx(roc_auc_score(labels[i], scores[i]))
        assert per_tag['ap'][i] == pytest.approx(average_precision_score(labels[i], scores[i]))


def test_summarise_means_per_group_leave_nan_out_without_warnings():
    per_tag = {'ap': np.array([0.2, np.nan, 0.6, 0.9, np.nan]), 'p@10': np.array([0.1, 0.3, 0.5, 0.7, 0.9])}
    groups = {'category': np.array(['genre', 'genre', 'mood', 'mood', 'era'])}
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a group whose APs are all NaN is NaN without numpy's empty-mean warning
        summary = summarise(per_tag, groups)
    assert summary['all'] == {'map': pytest.approx(1.7 / 3), 'p@10': pytest.approx(0.5), 'n_tags': 5}
    assert summary['category']['genre'] == {'map': pytest.approx(0.2), 'p@10': pytest.approx(0.2), 'n_tags': 2}
    assert summary['category']['mood'] == {'map': pytest.approx(0.75), 'p@10': pytest.approx(0.6), 'n_tags': 2}
    assert np.isnan(summary['category']['era']['map']) and summary['category']['era']['p@10'] == 0.9
    assert set(summary) == {'all', 'category'}
