"""The query benchmark of `search.py evaluate`: plain-language queries, each with the tags that define a relevant
song, scored by P@10 and AP over an index's songs in several query modes and typed as their tags.

    from search_eval import read_queries, evaluate, format_report
    queries = read_queries('demo_data/queries.tsv', searcher.encoder.words.tags)
    print(format_report(evaluate(searcher, queries, ['average', 'tags'])))

A query file holds `query<TAB>tag, tag, ...` lines ('#' starts a comment); a song is relevant when it carries
every tag of its line. Each query is ranked over all songs of the index by exact cosine with the stored
embeddings (an approximate index's own search is not what is measured). TYPED, the same tags typed as a query
(`tag, tag` in mode tags), is the upper bound the model allows. A query a mode cannot read (no word near a tag)
scores 0 there and its reason is listed.

The means are also given for two fixed halves of the file, so that a rule can be chosen on one and checked on the
other: the development half is the 1st, 3rd, 5th... query of the file (in its order), the held-out half the 2nd,
4th, 6th... (alternate rows, so that each half covers every category of a file grouped by category).
"""
import numpy as np

from errors import UserError
from metrics import average_precision, precision_at_k
from search_terms import normalise_tag

TYPED = 'typed'
HALVES = ('development', 'held-out')  # query i of the file (from 0) is in HALVES[i % 2]
LABELS = {'average': 'old: averaged', 'tags': 'new: tags', 'sentence': 'sentence', TYPED: 'typed tags'}


def read_queries(path, vocabulary):
    """[(query, [tags])] from a query file; a malformed line or a tag outside `vocabulary` is an error."""
    known = {normalise_tag(t) for t in vocabulary}
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f'query file {path} could not be read ({error}); pass a UTF-8 text file with --queries')
    queries = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        query, _, tags = line.partition('\t')
        tags = [normalise_tag(t) for t in tags.split(',') if t.strip()]
        if not query.strip() or not tags:
            raise UserError(f'{path}:{number}: {line!r} is not `query<TAB>tag, tag`; write the query, a tab, then '
                            'the tags a relevant song carries')
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise UserError(f'{path}:{number}: tag {unknown[0]!r} is not one of the index\'s {len(known)} tags; '
                            f'use tags of its vocabulary ({", ".join(sorted(known)[:12])}, ...)')
        queries.append((query.strip(), tags))
    if not queries:
        raise UserError(f'{path} holds no queries; write `query<TAB>tag, tag` lines')
    return queries


def relevance(searcher, tag_sets):
    """(n_queries, n_songs) 0/1: the song carries every tag of the set. A query without a relevant song is left
    out of the means (and listed); an index where no query has one is an error."""
    song_tags = [{normalise_tag(t) for t in searcher.tags_of(i)} for i in range(len(searcher.track_ids))]
    labels = np.array([[set(tags) <= have for have in song_tags] for tags in tag_sets], dtype=np.float64)
    if not labels.any():
        raise UserError(f'no song of {searcher.files.path} carries the tags of any query; an index built without '
                        'tags (--audio_dir) cannot be evaluated: build one with --data_path')
    return labels


def scores_of(searcher, texts, mode):
    """(n, n_songs) cosine scores of each text in `mode`, and {row: reason} for texts it cannot read."""
    embeddings = np.asarray(searcher.files.embeddings(), dtype=np.float32)
    scores, errors = np.zeros((len(texts), len(embeddings))), {}
    for i, text in enumerate(texts):
        try:
            scores[i] = embeddings @ searcher.encoder.encode(text, mode)[0]
        except UserError as error:
            errors[i] = str(error)
    return scores, errors


def half_mean(p, ap, rows):
    """{p, ap} over the rows of one half; None where the half holds no query with a song to find."""
    return {'p': float(np.mean(p[rows])), 'ap': float(np.mean(ap[rows]))} if rows.any() else None


def evaluate(searcher, queries, modes, k=10):
    """{'queries': [{query, tags, relevant, scores: {label: {p, ap, error}}}],
    'means': {label: {p, ap, halves: {development|held-out: {p, ap} or None}}}, 'k'}."""
    labels = relevance(searcher, [tags for _, tags in queries])
    rows = [{'query': q, 'tags': tags, 'relevant': int(n), 'scores': {}} for (q, tags), n in zip(queries, labels.sum(axis=1))]
    counted = labels.any(axis=1)
    runs = [(mode, [q for q, _ in queries], mode) for mode in modes]
    runs.append((TYPED, [', '.join(tags) for _, tags in queries], 'tags'))
    means = {}
    for label, texts, mode in runs:
        scores, errors = scores_of(searcher, texts, mode)
        p, ap = precision_at_k(scores, labels, k), average_precision(scores, labels)
        for i in errors:  # an unreadable query found nothing
            p[i] = ap[i] = 0.0
        for i, row in enumerate(rows):  # None: no song to find
            row['scores'][label] = {'p': float(p[i]) if counted[i] else None, 'ap': float(ap[i]) if counted[i] else None,
                          'error': errors.get(i)}
        means[label] = {'p': float(np.mean(p[counted])), 'ap': float(np.mean(ap[counted])),
                        'halves': {half: half_mean(p, ap, counted & (np.arange(len(rows)) % 2 == h))
                                   for h, half in enumerate(HALVES)}}
    return {'queries': rows, 'means': means, 'k': k}


def format_report(report, n_listed=5):
    """The per-query table, the means, the queries the new path improved most and those it serves worst."""
    labels = list(report['means'])
    width = max([len(r['query']) for r in report['queries']] + [len('mean, development')]) + 2
    k = report['k']
    head = f'{"query":<{width}}{"songs":>6}' + ''.join(f'{LABELS[m] + f" P@{k}":>22}{"AP":>7}' for m in labels)
    lines = [head]
    for row in report['queries']:
        cells = ''.join(f'{row["scores"][m]["p"]:>22.2f}{row["scores"][m]["ap"]:>7.3f}' if row['relevant'] else f'{"-":>22}{"-":>7}'
                        for m in labels)
        lines.append(f'{row["query"]:<{width}}{row["relevant"]:>6}{cells}   [{", ".join(row["tags"])}]')
    means = report['means']
    scored = [r for r in report['queries'] if r['relevant']]
    lines.append(f'{"mean":<{width}}{"":>6}' + ''.join(f'{means[m]["p"]:>22.3f}{means[m]["ap"]:>7.3f}'
                                                        for m in labels))
    for half in HALVES:
        cells = [means[m]['halves'][half] for m in labels]
        lines.append(f'{"mean, " + half:<{width}}{"":>6}' + ''.join(
            f'{c["p"]:>22.3f}{c["ap"]:>7.3f}' if c else f'{"-":>22}{"-":>7}' for c in cells))
    if 'average' in labels and 'tags' in labels:
        gain = sorted(scored, key=lambda r: r['scores']['average']['ap'] - r['scores']['tags']['ap'])
        lines.append('most improved (AP, old -> new): ' + '; '.join(
            f'{r["query"]!r} {r["scores"]["average"]["ap"]:.3f} -> {r["scores"]["tags"]["ap"]:.3f}'
            for r in gain[:n_listed]))
    if 'tags' in labels:
        worst = sorted(scored, key=lambda r: r['scores']['tags']['ap'])
        lines.append('weakest under the new path (AP new / typed tags): ' + '; '.join(
            f'{r["query"]!r} {r["scores"]["tags"]["ap"]:.3f} / {r["scores"][TYPED]["ap"]:.3f}'
            for r in worst[:n_listed]))
    missing = [r['query'] for r in report['queries'] if not r['relevant']]
    if missing:
        lines.append(f'left out of the means, no song carries their tags: {", ".join(map(repr, missing))}')
    for row in report['queries']:
        lines += [f'{LABELS[m]} could not read {row["query"]!r}: {row["scores"][m]["error"]}' for m in labels
                  if row['scores'][m]['error']]
    return '\n'.join(lines)
