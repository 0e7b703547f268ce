"""Import a published tagging dataset, or your own tagged audio, into the release layout that main.py,
experiments.py, search.py and retrieval.py read (README: data layout; docs/datasets.md).

    python import_dataset.py mtg-jamendo ROOT DATA_PATH [--subset top50tags|genre|instrument|moodtheme|all]
                                                        [--split 0..4] [--audio_dir DIR [--drop_missing]]
    python import_dataset.py magnatagatune ROOT DATA_PATH [--audio_dir DIR [--drop_missing]]
    python import_dataset.py csv FILE DATA_PATH --audio_dir DIR [--threshold 1] [--seed 0] [--drop_missing]

mtg-jamendo: ROOT is a checkout of github.com/MTG/mtg-jamendo-dataset; reads
ROOT/data/splits/split-N/autotagging_SUBSET-{train,validation,test}.tsv and keeps the official split exactly
(`all`: the genre, instrument and moodtheme files merged). Tags are the NAME of CATEGORY---NAME; the category
goes to tag_categories.tsv. magnatagatune: ROOT/annotations_final.csv as published; the 50 most frequent tags,
split by the mp3's folder (0-b train, c valid, d-f test), clips with none of the 50 dropped. csv: one row per
track, columns track_id,path,tags[,artist][,split] (tags separated by ';'; split train, valid or validation,
test); without a split, step 1's artist-disjoint split with --threshold songs per tag and split.
Writes into DATA_PATH: binaries.npy, tags.npy, existing_ids.npy, {train,valid,test}_ids.npy,
train_tag_to_ix.pkl, tag_categories.tsv, audio_manifest.tsv (track id -> audio path, read by step 0),
tag_words.tsv (tag -> words, read by step 2; edit it freely) and import_report.txt/.json. Only the metadata is
needed; with --audio_dir every track's audio file is checked first (missing ones are refused, or left out with
--drop_missing). Then: step0_mel_spectrogram.py run AUDIO_DIR DATA_PATH, step2_word_embedding.py run DATA_PATH.
"""
import argparse
import sys

from cli_args import HelpFormatter, non_negative_int, positive_int, usage_examples
from dataset_import import JAMENDO_SUBSETS, read_magnatagatune, read_mtg_jamendo, read_own_csv, write_dataset
from errors import exit_on_user_error


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter,
                                     epilog=usage_examples(__doc__))
    commands = parser.add_subparsers(dest='command', required=True)
    jamendo = commands.add_parser('mtg-jamendo', help='MTG-Jamendo autotagging splits', formatter_class=HelpFormatter)
    jamendo.add_argument('root', help='checkout of the mtg-jamendo-dataset repository (holds data/splits/)')
    jamendo.add_argument('--subset', choices=JAMENDO_SUBSETS, default='top50tags', help='tag subset')
    jamendo.add_argument('--split', type=int, choices=range(5), default=0, help='official split number')
    mtat = commands.add_parser('magnatagatune', help='MagnaTagATune annotations_final.csv',
                               formatter_class=HelpFormatter)
    mtat.add_argument('root', help='folder holding annotations_final.csv')
    own = commands.add_parser('csv', help='your own tagged audio', formatter_class=HelpFormatter)
    own.add_argument('file', help='CSV with columns track_id,path,tags[,artist][,split]')
    own.add_argument('--threshold', type=non_negative_int, default=1,
                     help='artist split only: songs per tag needed in each of train/valid/test (step 1\'s THRESHOLD)')
    own.add_argument('--seed', type=int, default=0, help='artist split only: seed of the artist shuffles')
    own.add_argument('--max_tries', type=positive_int, default=1000,
                     help='artist split only: shuffles before giving up')
    for command in (jamendo, mtat, own):
        command.add_argument('data_path', help='folder the release layout is written to')
        command.add_argument('--audio_dir', required=command is own, default=None,
                             help='folder the audio paths are relative to: every file is checked')
        command.add_argument('--drop_missing', action='store_true',
                             help='leave out tracks without an audio file (listed in the report) instead of stopping')
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'mtg-jamendo':
        catalogue = read_mtg_jamendo(args.root, args.subset, args.split)
    elif args.command == 'magnatagatune':
        catalogue = read_magnatagatune(args.root)
    else:
        catalogue = read_own_csv(args.file, args.threshold, args.seed, args.max_tries)
    write_dataset(catalogue, args.data_path, args.audio_dir, args.drop_missing)
    return 0


if __name__ == '__main__':
    sys.exit(main())
