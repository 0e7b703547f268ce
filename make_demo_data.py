"""Build the embedded demo dataset: real scores and metadata, rendered audio, real word vectors.

    python make_demo_data.py [--out data/demo] [--n_songs 1200] [--seed 0] [--keep_audio]
                             [--top_n 100] [--threshold 2] [--min_tag_songs N]
                             [--art_artist work|composer] [--workers 2]

Deterministically builds, in the raw MSD500 release format, a dataset of real works from the
music21 corpus and pushes it through the project's own preprocessing (steps 0-3), as a user would:

  1. select N works from 17 sources (Essen folk songs of a dozen regions, O'Neill, Ryan,
     Aird, Northumbrian and American fife tunes, Bach, Palestrina, Monteverdi, the trecento,
     Haydn/Mozart/Beethoven/Schumann quartets, ...) and read their real metadata;
  2. render each to 30 s of 22,050 Hz mono audio (music21 -> pretty_midi -> tinysoundfont with
     pretty_midi's TimGM6mb.sf2); the instrument is drawn at random, independently of the
     collection, the tempo within a plausible range for the piece's style;
  3. write DIR/msd500/track_tags.tsv (song_id, original_tag, cleaned_tag, tag_category, score) with
     location, genre, era, theme tags from the metadata and instrument and mood (major/minor,
     fast/slow) tags from the rendering, plus noise rows scored < 50, and
     DIR/msd500/song_to_artist.pkl (artist = composer + work, or composer with --art_artist
     composer; the collector or composer of a dance tune; the source book or region-collection
     of an anonymous folk song);
  4. step0_mel_spectrogram.py (float16) -> DIR/spec/; the audio is deleted afterwards unless
     --keep_audio;
  5. DIR/glove-6b-50d.bin: real GloVe 6B 50-d vectors (the "google" vectors) in word2vec binary
     format, for the 100k most frequent words plus every tag word;
  6. step1_data_split.py --vocab google (the music vectors do not exist yet), then
     DIR/music_w2v/model_semeval_trigrams_300.model: a gensim Word2Vec trained on the TRAINING
     songs' annotations plus titles and collection/composer names of all songs (no test labels);
  7. step2_word_embedding.py; a SIMULATED taste profile DIR/msd500/SIMULATED_taste_profile.tsv
     (users follow region, era and collection, not instrument) factorised by step3_taste_profile.py;
  8. DIR/demo_report.md/.json and DIR/demo_songs.tsv (what each song is and where it comes from).

Resumable: finished stages leave markers in DIR/.build/ and rendering skips songs already done;
rerun the same command after an interruption; killing the build stops its workers and steps too.
The same arguments give identical ids, tags, splits and vectors. Options must stay the same for
one DIR (they are checked). This file drives the stages; each concern lives in demo_data/.
"""
import argparse
import os
import shutil
import time
from collections import Counter

import numpy as np

from demo_data.annotations import curate_tags, song_tags, write_msd500
from demo_data.processes import Guardian, run_step
from demo_data.render import render_all, render_facts
from demo_data.report import write_report
from demo_data.selection import catalogue, select_works
from demo_data.taste import simulate_taste_profile
from demo_data.vectors import NN_TAGS, music_sentences, train_music_word2vec, write_glove_word2vec
from errors import UserError, exit_on_user_error
from file_io import read_json, write_json

ROOT = os.path.dirname(os.path.abspath(__file__))
RESTART = 'delete DIR/.build (or all of DIR) and rerun to build it again'


class Build:
    """Stage markers under DIR/.build/: a stage whose marker exists is skipped on a rerun."""

    def __init__(self, out, params):
        self.out = out
        self.clock = time.time()
        self.state = os.path.join(out, '.build')
        os.makedirs(self.state, exist_ok=True)
        params_file = os.path.join(self.state, 'params.json')
        before = read_json(params_file, 'options of the build', RESTART) if os.path.exists(params_file) else params
        if before != params:
            changed = ', '.join(f'{k} {before.get(k)} -> {v}' for k, v in params.items() if before.get(k) != v)
            raise UserError(f'{out} was built with other options ({changed}); use another --out or delete it')
        write_json(params_file, params)

    def done(self, stage):
        return os.path.exists(os.path.join(self.state, stage + '.done'))

    def mark(self, stage, **facts):
        """Record a finished stage, its facts and its duration (since the previous mark)."""
        now = time.time()
        write_json(os.path.join(self.state, stage + '.done'), dict(facts, seconds=round(now - self.clock, 1)))
        self.clock = now

    def facts(self, stage):
        return read_json(os.path.join(self.state, stage + '.done'), f'facts of the finished stage {stage}', RESTART)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo',
                        help='dataset folder (DATA_PATH of the training code; default %(default)s)')
    parser.add_argument('--n_songs', type=int, default=1200, help='works to select and render (default %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of every random choice (default %(default)s)')
    parser.add_argument('--top_n', type=int, default=100, help='TOP_N_TAGS of step 1 (default %(default)s)')
    parser.add_argument('--threshold', type=int, default=2,
                        help='THRESHOLD of step 1: songs per tag per split (default %(default)s)')
    parser.add_argument('--min_tag_songs', type=int, help='curation: songs a tag needs '
                        '(default n_songs/60, within 3..20)')
    parser.add_argument('--art_artist', choices=['composer', 'work'], default='work',
                        help='artist of an art-music song: its composer, or composer + work (cantata, mass, opus) '
                        '(default %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes for rendering/step 0 (default: the number of CPUs, here %(default)s)')
    parser.add_argument('--keep_audio', action='store_true',
                        help='keep DIR/audio/ (FLAC) after step 0, to listen in search.py serve; on a finished build it renders the audio again (default: delete it)')
    return parser


def build_params(args):
    """The options that decide the data (checked against the ones DIR was started with)."""
    if args.n_songs < 20 or args.threshold < 1 or args.top_n < 1 or args.workers < 1:
        raise UserError(f'--n_songs {args.n_songs}, --threshold {args.threshold}, --top_n {args.top_n}, '
                        f'--workers {args.workers}: --n_songs must be >= 20 and the others >= 1; pass larger values')
    min_tag_songs = args.min_tag_songs or int(np.clip(round(args.n_songs / 60), 3, 20))
    return {'n_songs': args.n_songs, 'seed': args.seed, 'top_n': args.top_n, 'threshold': args.threshold,
            'min_tag_songs': min_tag_songs, 'art_artist': args.art_artist}


def select_stage(build, params):
    """1. The works and their real metadata."""
    selection_file = os.path.join(build.state, 'selection.json')
    if not build.done('select'):
        all_works = catalogue(params['art_artist'])
        write_json(selection_file, select_works(all_works, params['n_songs'], params['seed']))
        build.mark('select', catalogue=len(all_works),
                   catalogue_per_source=dict(Counter(w['source'] for w in all_works)))
    works = read_json(selection_file, 'the selected works', RESTART)
    print(f'{len(works)} works selected from the music21 corpus', flush=True)
    return works


def render_stage(build, works, seed, audio_dir, workers, keep_audio=False):
    """2. Audio; returns the songs that could be rendered, with their tags and rendering facts. --keep_audio on a
    finished build renders the deleted audio again (to listen to the songs in search.py serve)."""
    info_dir = os.path.join(build.state, 'render')
    if not build.done('render') or keep_audio:
        infos = render_all(works, seed, audio_dir, info_dir, workers, audio_wanted=keep_audio)
        build.mark('render', failed={t: i['error'] for t, i in infos.items() if 'error' in i})
    infos = render_facts(works, info_dir)
    return [dict(w, tags=song_tags(w, infos[w['track_id']]), render=infos[w['track_id']])
            for w in works if 'error' not in infos[w['track_id']]]


def vector_and_split_stages(build, guardian, songs, kept_tags, args):
    """5-6. GloVe ("google") vectors, step 1's split, the music Word2Vec on training songs, step 2.
    Returns {split: track ids}."""
    out = args.out
    glove_path = os.path.join(out, 'glove-6b-50d.bin')
    if not build.done('glove'):
        n_words, missing = write_glove_word2vec(glove_path, sorted(kept_tags) + NN_TAGS)
        build.mark('glove', words=n_words, tags_without_vector=missing)
    if not build.done('step1'):  # the music model needs the split, so step 1 checks GloVe only
        run_step(guardian, ROOT, 'step1_data_split.py', 'run', out, args.top_n, args.threshold, '--seed', args.seed,
                 '--vocab', 'google', '--google_path', glove_path)
        build.mark('step1')
    split_ids = {name: [str(e).split('//', 1)[1] for e in np.load(os.path.join(out, f'{name}_ids.npy'))]
                 for name in ('train', 'valid', 'test')}
    music_path = os.path.join(out, 'music_w2v', 'model_semeval_trigrams_300.model')
    if not build.done('music_w2v'):
        sentences = music_sentences(songs, set(split_ids['train']), args.seed)
        model = train_music_word2vec(music_path, sentences, args.seed)
        build.mark('music_w2v', sentences=len(sentences), words=len(model.wv.key_to_index))
    if not build.done('step2'):
        run_step(guardian, ROOT, 'step2_word_embedding.py', 'run', out, '--google_path', glove_path,
                 '--music_path', music_path, '--nn_tags', *NN_TAGS)
        build.mark('step2')
    return split_ids


def taste_stages(build, guardian, songs, out, seed):
    """7. Simulated listening -> item factors with step 3's ALS."""
    taste_path = os.path.join(out, 'msd500', 'SIMULATED_taste_profile.tsv')
    if not build.done('taste'):
        build.mark('taste', **simulate_taste_profile(taste_path, songs, seed))
    if not build.done('step3'):
        run_step(guardian, ROOT, 'step3_taste_profile.py', 'run', out, '--taste_profile', taste_path,
                 '--factors', 200, '--iterations', 15, '--regularization', 0.01, '--seed', seed, '--num_threads', 1)
        build.mark('step3')


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    params = build_params(args)
    started, out = time.time(), args.out
    build = Build(out, params)
    guardian = Guardian()
    os.makedirs(os.path.join(out, 'msd500'), exist_ok=True)
    audio_dir = os.path.join(out, 'audio')
    works = select_stage(build, params)
    songs = render_stage(build, works, args.seed, audio_dir, args.workers, args.keep_audio)
    if not build.done('step0'):  # 3. spectrograms with the project's step 0; the audio is only an intermediate
        run_step(guardian, ROOT, 'step0_mel_spectrogram.py', 'run', audio_dir, out, '--workers', args.workers,
                 '--float16')
        build.mark('step0')
    if not args.keep_audio and os.path.isdir(audio_dir):
        shutil.rmtree(audio_dir)
    kept_tags, dropped_tags = curate_tags(songs, params['min_tag_songs'], args.threshold, args.seed)
    if not build.done('msd500'):  # 4. MSD500-format annotations and artists
        build.mark('msd500', **write_msd500(out, songs, kept_tags, args.seed))
    split_ids = vector_and_split_stages(build, guardian, songs, kept_tags, args)
    taste_stages(build, guardian, songs, out, args.seed)
    write_report(out, build, songs, works, split_ids, dropped_tags, params, time.time() - started)
    print(f'done: {out} ({time.time() - started:.0f} s this run); see {os.path.join(out, "demo_report.md")}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
