"""Tag-based music search: embed a catalogue once into a FAISS index, then answer text queries.

    # 1. embed the songs once (resumable; rerunning with another --index_type reuses the embeddings)
    python search.py index --model_load_path checkpoints/best.ckpt --data_path data/demo
                           [--split all|train|valid|test] [--index_path search_index]
                           [--index_type flat|ivf|hnsw] [--nlist N] [--nprobe 32] [--batch_size 128]
    python search.py index --model_load_path best.ckpt --audio_dir my_music/ --data_path data/demo  # spec models
    # 2. ask it
    python search.py query --index_path search_index --query "piano" [--k 10] [--json]
    python search.py query --index_path search_index --query "baroque keyboard music"  # plain language
    python search.py query --index_path search_index --query "sad violin" --query_mode average  # the former path
    python search.py query --index_path search_index          # interactive: one query a line, empty line ends
    python search.py query --index_path search_index --audio song.mp3          # songs that sound like it
    python search.py query --index_path search_index --track_id TRAAAAW128F429D538   # its nearest songs
    python search.py tag --index_path search_index --track_id TRAAAAW128F429D538 [--audio song.mp3] [--json]
    # 3. listen: a local page at http://127.0.0.1:8000 (and a JSON API beside it)
    python search.py serve --index_path search_index [--audio_dir data/demo/audio] [--host 127.0.0.1] [--port 8000]
    # 4. measure: P@10 and AP of plain-language queries, old averaging vs the tags they are read as vs typed tags
    python search.py evaluate --index_path search_index --queries demo_data/queries.tsv [--modes average,tags]

Songs are embedded exactly as the evaluation does (EvalDataset: `num_chunk` evenly spaced chunks, averaged by the
model's chunks_to_embedding in eval mode), L2-normalised and stored in INDEX_PATH/:
  songs.faiss        IndexFlatIP (exact cosine, default), IVF-Flat (`--index_type ivf`, searched with nprobe)
                     or HNSW (`--index_type hnsw`, efSearch) over the normalised 256-d embeddings
  embeddings.npy     the normalised embeddings, row i = track i; embeddings.json says of which checkpoint and
                     songs: an index of another --index_type over the same songs is built from them, not re-embedded
  tracks.npz         track ids, their tags (from binaries.npy / tags.npy where known), audio paths
  meta.json          checkpoint path and sha1, input_type, its hyper-parameters, split, index settings
  query_encoder.npz  the checkpoint's tag branch (fc1, bn1, fc2): queries never load the CNN nor re-embed
  tag_vectors.npz    the tags of the vocabulary and their word vectors ({w2v_type}_emb.pkl, in tags.npy order)
  mel/               (--audio_dir) log-mel spectrograms computed with step 0's compute_mel
An interrupted build resumes where it stopped (.embeddings.partial.npy + .progress.json); --force starts over.
No index file is a pickle (JSON, .npy/.npz read with allow_pickle=False, FAISS' own format), so opening an index
runs no code; an index of an older search.py (tag_vectors.pkl, query_encoder.pt) asks for `index --force`.

Code: search.py (this command line), search_index.py (catalogue, resumable embedding, FAISS), search_store.py (the
index's files), search_terms.py (what a query means), search_query.py (query vectors, search, result
formatting), search_eval.py (the query benchmark), search_sentence.py (the optional sentence encoder).

A query is read as tags with weights (search_terms; docs/queries.md): stop words are dropped, tags recognised (a
multi-word tag such as "smooth jazz" or smooth_jazz is one), and every other word mapped to its nearest tags in
the word vectors, which are --w2v_path, by default for google DATA/GoogleNews-vectors-negative300.bin (or
DATA/glove-6b-50d.bin, the demo dataset's GloVe, when only that exists), for music
DATA/music_w2v/model_semeval_trigrams_300.model. The tags' embeddings are combined, weighted, in the joint space,
and the answer shows the interpretation. Commas separate terms explicitly ("hip hop, piano"). A query none of
whose words is known stops a one-shot query with one line naming the word and the nearest known words (exit 2);
in interactive mode only that line is printed. --query_mode average restores the former averaging of every
word's vector; --query_mode sentence maps the other words with a sentence encoder (optional packages).
"""
import argparse
import json
import os
import sys

from cli_args import BOOL, HelpFormatter, non_negative_int, positive_int, str2bool
from errors import UserError, exit_on_user_error


def show(result, as_json):
    from search_query import format_result
    print(json.dumps(result) if as_json else format_result(result), flush=True)


def open_index(args):
    from retrieval import Index
    return Index.open(args.index_path, getattr(args, 'w2v_path', None), getattr(args, 'data_path', None),
                      nprobe=getattr(args, 'nprobe', None), ef_search=getattr(args, 'ef_search', None))


@exit_on_user_error
def run_query(args):
    index = open_index(args)
    searcher = index.searcher
    if args.audio is not None:
        show(index.search_audio(args.audio, args.k), args.json)
        return 0
    if args.track_id is not None:
        show(index.similar(args.track_id, args.k), args.json)
        return 0
    if args.query is not None:
        show(searcher.search(args.query, args.k, args.query_mode), args.json)
        return 0
    interactive = sys.stdin.isatty()
    if interactive and not args.json:
        print(f'{searcher.meta["n_songs"]} songs ({searcher.meta["index"]["type"]} index); type a tag or words, '
              'an empty line ends', file=sys.stderr)
    while True:
        try:
            if interactive:  # the prompt goes to stderr, so that --json output stays pure JSON
                print('query> ', end='', file=sys.stderr, flush=True)
            line = input() if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not line.strip():  # EOF ('') or an empty line
            break
        try:
            show(searcher.search(line.strip(), args.k, args.query_mode), args.json)
        except UserError as e:  # a misspelt word ends nothing: say so and read the next line
            print(f'error: {e}', file=sys.stderr, flush=True)
    return 0


@exit_on_user_error
def run_tag(args):
    index = open_index(args)
    if args.audio is not None:
        answer = {'audio': args.audio, 'predicted': index.tag_audio(args.audio, args.k), 'annotated': []}
    else:
        answer = index.tags(args.track_id, args.k)
    if args.json:
        print(json.dumps({**answer, 'predicted': [{'tag': t, 'score': s} for t, s in answer['predicted']]}))
        return 0
    print(f'{answer.get("track_id") or answer["audio"]}: annotated {", ".join(answer["annotated"]) or "-"}')
    for rank, (tag, score) in enumerate(answer['predicted'], 1):
        mark = '*' if tag in answer['annotated'] else ' '
        print(f'{rank:>4}  {score:>7.4f} {mark} {tag}')
    return 0


@exit_on_user_error
def run_serve(args):
    from search_server import serve
    index = open_index(args)
    return serve(index, args.host, args.port, args.audio_dir, args.query_mode)


@exit_on_user_error
def run_evaluate(args):
    from search_eval import evaluate, format_report, read_queries
    searcher = open_index(args).searcher
    from search_terms import check_mode
    modes = [check_mode(m.strip()) for m in args.modes.split(',') if m.strip()]
    if not modes:
        raise UserError('--modes is empty; pass query modes such as average,tags')
    report = evaluate(searcher, read_queries(args.queries, searcher.encoder.words.tags), modes, args.k)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- CLI
def add_query_arguments(parser):
    parser.add_argument('--index_path', default='search_index', help='folder of a built index')
    parser.add_argument('--w2v_path', default=None,
                        help='full word vectors for words that are not tags (default for google: '
                             'DATA/GoogleNews-vectors-negative300.bin, or DATA/glove-6b-50d.bin; for music: '
                             'DATA/music_w2v/model_semeval_trigrams_300.model). A gensim .model file is a pickle: '
                             'load only one from a trusted source')
    parser.add_argument('--data_path', default=None, help='DATA above (default: the index\'s data_path)')


def add_mode_argument(parser):
    from search_terms import MODES
    parser.add_argument('--query_mode', default='tags', choices=MODES,
                        help='tags: words read as tags with weights, combined in the joint space; sentence: other '
                             'words mapped by a sentence encoder (pip install -r requirements-sentence.txt); '
                             'average: the former averaging of every word\'s vector')


def add_commands(commands, fmt):
    """query, tag and serve: the commands that read a built index."""
    query = commands.add_parser('query', help='search the index by words (interactive without --query), by an '
                                'audio file or by a track', formatter_class=fmt)
    add_query_arguments(query)
    what = query.add_mutually_exclusive_group()
    what.add_argument('--query', default=None, help='tag(s) or words; omitted: read queries from stdin')
    what.add_argument('--audio', default=None, help='an audio file: the songs that sound most like it')
    what.add_argument('--track_id', default=None, help='a track of the index: its nearest songs (itself left out)')
    query.add_argument('--k', type=positive_int, default=10, help='tracks to return')
    add_mode_argument(query)
    query.add_argument('--json', action='store_true', help='print one JSON object per query')
    query.add_argument('--nprobe', type=positive_int, default=None, help='IVF lists searched (default: the index\'s)')
    query.add_argument('--ef_search', type=positive_int, default=None, help='HNSW breadth (default: the index\'s)')

    tag = commands.add_parser('tag', help='the top tags of a track of the index or of an audio file',
                              formatter_class=fmt)
    add_query_arguments(tag)
    what = tag.add_mutually_exclusive_group(required=True)
    what.add_argument('--track_id', default=None, help='a track of the index (its annotated tags shown beside)')
    what.add_argument('--audio', default=None, help='an audio file (embedded with the index\'s checkpoint)')
    tag.add_argument('--k', type=positive_int, default=10, help='tags to print')
    tag.add_argument('--json', action='store_true', help='print one JSON object')

    serve = commands.add_parser('serve', help='a local web page (and JSON API) to search, tag and listen',
                                formatter_class=fmt)
    add_query_arguments(serve)
    serve.add_argument('--host', default='127.0.0.1',
                       help='address to listen on; 0.0.0.0 opens the page, the API and the audio to the network')
    serve.add_argument('--port', type=positive_int, default=8000, help='TCP port')
    serve.add_argument('--audio_dir', default=None,
                       help='folder of the songs\' audio (files named TRACK_ID.ext, searched recursively); '
                            'default: the index\'s own files, else DATA/audio')
    add_mode_argument(serve)

    evaluate = commands.add_parser('evaluate', help='P@10 and AP of a file of plain-language queries, per query '
                                   'mode and typed as their tags', formatter_class=fmt)
    add_query_arguments(evaluate)
    evaluate.add_argument('--queries', required=True,
                          help='query file: `query<TAB>tag, tag` lines (a relevant song carries every tag)')
    evaluate.add_argument('--modes', default='average,tags', help='comma-separated query modes to compare')
    evaluate.add_argument('--k', type=positive_int, default=10, help='P@k')
    evaluate.add_argument('--json', action='store_true', help='print one JSON object')

def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    fmt = HelpFormatter

    index = commands.add_parser('index', help='embed the songs once and save the index', formatter_class=fmt)
    index.add_argument('--model_load_path', required=True, help='trained checkpoint (.ckpt), ours or the original\'s')
    index.add_argument('--data_path', default=None,
                       help='dataset (README: data layout); default: the checkpoint\'s training data_path')
    index.add_argument('--split', default='all', choices=['all', 'train', 'valid', 'test'])
    index.add_argument('--audio_dir', default=None, help='index a folder of audio files instead (spec models)')
    index.add_argument('--index_path', default='search_index', help='folder the index is written to')
    index.add_argument('--index_type', default='flat', choices=['flat', 'ivf', 'hnsw'],
                       help='flat: exact; ivf / hnsw: approximate, for catalogues of millions')
    index.add_argument('--nlist', type=positive_int, default=None, help='IVF lists (default ~4*sqrt(n_songs))')
    index.add_argument('--nprobe', type=positive_int, default=32, help='IVF lists searched per query')
    index.add_argument('--hnsw_m', type=positive_int, default=32, help='HNSW links per node')
    index.add_argument('--ef_construction', type=positive_int, default=80, help='HNSW build breadth')
    index.add_argument('--ef_search', type=positive_int, default=64, help='HNSW search breadth')
    index.add_argument('--batch_size', type=positive_int, default=128,
                       help='chunks per forward pass (songs per batch = batch_size // num_chunk; cf models: '
                            'batch_size songs), as in main.py')
    index.add_argument('--num_chunk', type=positive_int, default=8, help='chunks averaged per song, as main.py TEST')
    index.add_argument('--input_length', type=positive_int, default=173, help='frames per chunk, as main.py TEST')
    index.add_argument('--w2v_type', default=None, choices=['google', 'music'], help='default: the checkpoint\'s')
    index.add_argument('--w2v_path', default=None, help='full word vectors recorded for queries (see query; a gensim .model file must come from a '
                       'trusted source)')
    index.add_argument('--is_subset', type=str2bool, default=None, metavar=BOOL, help='default: the checkpoint\'s')
    index.add_argument('--num_workers', type=non_negative_int, default=0, help='DataLoader workers (and mel processes)')
    index.add_argument('--force', action='store_true', help='re-embed even if the embeddings are up to date')

    add_commands(commands, fmt)
    return parser


@exit_on_user_error
def run_index(args):
    from search_index import build_index
    build_index(args)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = {'index': run_index, 'query': run_query, 'tag': run_tag, 'serve': run_serve,
               'evaluate': run_evaluate}[args.command]
    try:
        return command(args)
    except BrokenPipeError:  # `search.py query ... | head`: the reader left; nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot raise again
        return 0


if __name__ == '__main__':
    sys.exit(main())
