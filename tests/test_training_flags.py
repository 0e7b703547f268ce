"""The training flags observed where they act, inside the steps of a real TRAIN / TEST: the negatives that
--is_weighted draws, the dtype --precision bf16-mixed computes in, the memory layout --channels_last gives the CNN."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import model as models
import solver
from test_core import evaluate, train


@pytest.fixture
def drawn(monkeypatch):
    """Every call of the training step's negative sampler: its inputs and the negatives it drew."""
    calls = []
    real = solver.sample_negatives

    def spy(tag_emb, song_emb, tag_index, song_labels, weighted=False):
        negative, has_negative = real(tag_emb, song_emb, tag_index, song_labels, weighted)
        calls.append({'tag_emb': tag_emb.detach(), 'song_emb': song_emb.detach(), 'tag': tag_index,
                      'labels': song_labels, 'negative': negative, 'has': has_negative})
        return negative, has_negative
    monkeypatch.setattr(solver, 'sample_negatives', spy)
    return calls


def log_likelihood_ratio(calls):
    """log P(draws | cosine-weighted) - log P(draws | uniform over valid negatives), with what it is expected to be
    under either rule and its standard deviation under the weighted one. The weights are recomputed here from
    the embeddings: (cos(tag_i, song_j) + 1) / 2 over the songs without tag i, as in the original."""
    observed = expected_weighted = expected_uniform = variance = 0.0
    for call in calls:
        valid = (call['labels'][:, call['tag']].T == 0).double()
        cos = F.normalize(call['tag_emb'].double(), dim=1) @ F.normalize(call['song_emb'].double(), dim=1).T
        rows = call['has'].nonzero().squeeze(1)
        p_weighted = (valid * (cos + 1) / 2)[rows]
        p_weighted /= p_weighted.sum(1, keepdim=True)
        p_uniform = valid[rows] / valid[rows].sum(1, keepdim=True)
        ratio = torch.where(valid[rows] > 0, (p_weighted / p_uniform).log(), torch.zeros_like(p_uniform))
        observed += ratio[torch.arange(len(rows)), call['negative'][rows]].sum().item()
        mean_w = (p_weighted * ratio).sum(1)
        expected_weighted += mean_w.sum().item()
        expected_uniform += (p_uniform * ratio).sum().item()
        variance += ((p_weighted * ratio ** 2).sum(1) - mean_w ** 2).sum().item()
    return observed, expected_weighted, expected_uniform, variance ** 0.5


@pytest.mark.parametrize('weighted', [True, False])
def test_is_weighted_reaches_the_negatives_a_training_step_draws(dataset, tmp_path, drawn, weighted):
    """8,192 draws of a TRAIN: their likelihood ratio sits at the flag's rule, far (in standard deviations) from
    the other rule's."""
    train(dataset['root'], tmp_path / 'ck', '--input_type', 'cf', '--is_balanced', 'True', '--is_weighted',
          str(weighted), '--epoch_size', 8192)
    assert sum(len(c['negative']) for c in drawn) == 8192
    observed, if_weighted, if_uniform, sd = log_likelihood_ratio(drawn)
    assert if_weighted - if_uniform > 8 * sd  # the two rules are told apart by these draws
    midpoint = (if_weighted + if_uniform) / 2
    assert (observed > midpoint) == weighted, (observed, if_weighted, if_uniform, sd)
    assert abs(observed - (if_weighted if weighted else if_uniform)) < 4 * sd


@pytest.fixture
def song_embedding_dtypes(monkeypatch):
    """The dtype of every song embedding that evaluation (valid and test) computes."""
    dtypes = []
    for cls in models.MODELS.values():
        def recording(self, spec_chunks, cf, real=cls.chunks_to_embedding):
            out = real(self, spec_chunks, cf)
            dtypes.append(out.dtype)
            return out
        monkeypatch.setattr(cls, 'chunks_to_embedding', recording)
    return dtypes


@pytest.mark.parametrize('input_type', ['spec', 'cf', 'hybrid'])
def test_bf16_trains_and_tests_every_input_type_with_float32_metrics(dataset, tmp_path, input_type, drawn,
                                                                     song_embedding_dtypes):
    fast = ['--input_type', input_type, '--precision', 'bf16-mixed', '--channels_last', 'True']
    ckpt = train(dataset['root'], tmp_path / 'ck', '--is_balanced', 'True', '--is_weighted', 'True', *fast)
    assert drawn and {(c['tag_emb'].dtype, c['song_emb'].dtype) for c in drawn} == {(torch.bfloat16,) * 2}
    assert song_embedding_dtypes and set(song_embedding_dtypes) == {torch.bfloat16}  # validation
    del song_embedding_dtypes[:]
    result = evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'res', *fast)
    assert song_embedding_dtypes and set(song_embedding_dtypes) == {torch.bfloat16}
    assert result['scores'].dtype == np.float32 and np.isfinite(result['scores']).all()
    assert 0 < result['summary']['all']['map'] <= 1


@pytest.fixture
def cnn_layouts(monkeypatch):
    """For every model a Solver builds: is its conv weight, and every input its layer2 convolution receives,
    channels-last (NHWC)?"""
    seen = []
    real = solver.build_model

    def spy(*args, **kwargs):
        built = real(*args, **kwargs)
        record = {'weight': built.layer2.conv.weight.is_contiguous(memory_format=torch.channels_last),
                  'inputs': []}
        built.layer2.conv.register_forward_pre_hook(
            lambda module, inputs: record['inputs'].append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
        seen.append(record)
        return built
    monkeypatch.setattr(solver, 'build_model', spy)
    return seen


def test_channels_last_is_a_layout_only(dataset, tmp_path, cnn_layouts):
    """The flag reaches the convolutions of TRAIN and TEST (weights and activations NHWC), and it is a layout only:
    the same parameters either way, and a channels-last checkpoint scores the same when loaded without it."""
    torch.manual_seed(0)
    plain = models.build_model('hybrid', word_dim=12, cf_dim=10, n_channels=8)
    fast = models.build_model('hybrid', word_dim=12, cf_dim=10, n_channels=8, channels_last=True)
    fast.load_state_dict(plain.state_dict())
    assert fast.layer2.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.state_dict().keys() == fast.state_dict().keys()
    spec, cf = torch.randn(4, 128, 173), torch.randn(4, 10)
    plain.eval(), fast.eval()
    with torch.no_grad():
        assert torch.allclose(plain.song_to_embedding(spec, cf), fast.song_to_embedding(spec, cf), atol=1e-4)
    ckpt = train(dataset['root'], tmp_path / 'ck', '--channels_last', 'True')
    for layout in ('True', 'False'):
        evaluate(dataset['root'], ckpt.best_model_path, tmp_path / layout, '--channels_last', layout)
    # TRAIN, TEST with the flag, TEST without: the layouts each used
    assert [(r['weight'], set(r['inputs'])) for r in cnn_layouts] == [(True, {True}), (True, {True}),
                                                                      (False, {False})]
    assert np.allclose(np.load(tmp_path / 'True' / 'scores.npy'), np.load(tmp_path / 'False' / 'scores.npy'),
                       atol=1e-4)
