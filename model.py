"""The three triplet networks of Won et al. (ICASSP 2021): tag branch + acoustic, cultural or hybrid song branch.

    from model import build_model
    model = build_model('spec', word_dim=300)            # AudioModel: short-chunk CNN on log-mel chunks
    tag_emb = model.word_to_embedding(word_vectors)      # (n, 256)
    song_emb = model.song_to_embedding(spec, cf)         # spec (n, 128, 173)

Parameter names follow the original repository exactly (`fc1`, `bn1`, `fc2` for the tag branch, `layer1`..`layer8`
for the CNN, `cf_fc1`.. and `cat_fc1`..), so the original's Lightning checkpoints load with `model.` stripped.
"""
import torch
from torch import nn

EMBEDDING_DIM = 256
HIDDEN_DIM = 512
CF_DIM = 200  # the released MSD item factors


class Conv_2d(nn.Module):
    """3x3 conv -> BN -> ReLU -> 2x2 max-pool: one block of the short-chunk CNN."""

    def __init__(self, input_channels, output_channels, shape=3, pooling=2):
        super().__init__()
        self.conv = nn.Conv2d(input_channels, output_channels, shape, padding=shape // 2)
        self.bn = nn.BatchNorm2d(output_channels)
        self.relu = nn.ReLU()
        self.mp = nn.MaxPool2d(pooling)

    def forward(self, x):
        return self.mp(self.relu(self.bn(self.conv(x))))


class Conv_emb(nn.Module):
    """1x1 conv -> BN -> ReLU: projects the CNN's last feature map to the embedding size."""

    def __init__(self, input_channels, output_channels):
        super().__init__()
        self.conv = nn.Conv2d(input_channels, output_channels, 1)
        self.bn = nn.BatchNorm2d(output_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def projection(x, fc1, bn, fc2, dropout):
    """Linear -> BN -> ReLU -> Dropout -> Linear, the head shared by every branch that is an MLP."""
    return fc2(dropout(torch.relu(bn(fc1(x)))))


class TripletModel(nn.Module):
    """Tag branch T(y) (word vector -> 512 -> 256), written once for every song branch."""

    input_type = None

    def __init__(self, word_dim=300):
        super().__init__()
        self.fc1 = nn.Linear(word_dim, HIDDEN_DIM)
        self.bn1 = nn.BatchNorm1d(HIDDEN_DIM)
        self.fc2 = nn.Linear(HIDDEN_DIM, EMBEDDING_DIM)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)

    def word_to_embedding(self, emb):
        return projection(emb, self.fc1, self.bn1, self.fc2, self.dropout)

    def song_to_embedding(self, spec, cf):
        """One song per row: spec (n, n_mels, input_length) and/or cf (n, cf_dim)."""
        raise NotImplementedError

    def chunks_to_embedding(self, spec_chunks, cf):
        """Evaluation: spec_chunks (n, num_chunk, n_mels, input_length), averaged over the chunks."""
        raise NotImplementedError

    def forward(self, tag, spec, cf):
        return self.word_to_embedding(tag), self.song_to_embedding(spec, cf)


class ShortChunkCNN(TripletModel):
    """Adds the acoustic branch: BN on the input, 7 conv blocks, a 1x1 block, max over time."""

    def __init__(self, word_dim=300, cnn_out_dim=EMBEDDING_DIM, n_channels=128):
        super().__init__(word_dim)
        c = n_channels
        widths = [1, c, c, 2 * c, 2 * c, 2 * c, 2 * c, 4 * c]
        self.spec_bn = nn.BatchNorm2d(1)
        for i in range(7):
            setattr(self, f'layer{i + 1}', Conv_2d(widths[i], widths[i + 1]))
        self.layer8 = Conv_emb(widths[-1], cnn_out_dim)

    channels_last = False  # set by use_channels_last(); a memory layout only, the parameters are the same

    def use_channels_last(self, enabled=True):
        """Channels-last (NHWC) convolutions: faster with oneDNN on CPUs and with cuDNN under bf16/fp16. Only the
        memory layout changes: parameter names, shapes and values (hence checkpoints) are those of NCHW."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def spec_to_embedding(self, spec):
        out = spec.unsqueeze(1)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        out = self.spec_bn(out)
        for i in range(1, 9):
            out = getattr(self, f'layer{i}')(out)
        if out.size(2) != 1:
            raise ValueError(f'the CNN expects 128 mel bands, got {spec.size(1)} (frequency left after pooling: '
                             f'{out.size(2)})')
        return out.squeeze(2).amax(dim=-1)

    def mean_chunk_embedding(self, spec_chunks):
        n, chunks = spec_chunks.shape[:2]
        out = self.spec_to_embedding(spec_chunks.reshape(n * chunks, *spec_chunks.shape[2:]))
        return out.view(n, chunks, -1).mean(dim=1)


class AudioModel(ShortChunkCNN):
    input_type = 'spec'

    def __init__(self, word_dim=300, cf_dim=CF_DIM, n_channels=128):
        super().__init__(word_dim, EMBEDDING_DIM, n_channels)

    def song_to_embedding(self, spec, cf):
        return self.spec_to_embedding(spec)

    def chunks_to_embedding(self, spec_chunks, cf):
        return self.mean_chunk_embedding(spec_chunks)


class CFModel(TripletModel):
    input_type = 'cf'

    def __init__(self, word_dim=300, cf_dim=CF_DIM, n_channels=128):
        super().__init__(word_dim)
        self.cf_fc1 = nn.Linear(cf_dim, HIDDEN_DIM)
        self.cf_bn1 = nn.BatchNorm1d(HIDDEN_DIM)
        self.cf_fc2 = nn.Linear(HIDDEN_DIM, EMBEDDING_DIM)

    def cf_to_embedding(self, cf):
        return projection(cf, self.cf_fc1, self.cf_bn1, self.cf_fc2, self.dropout)

    def song_to_embedding(self, spec, cf):
        return self.cf_to_embedding(cf)

    def chunks_to_embedding(self, spec_chunks, cf):
        return self.cf_to_embedding(cf)


class HybridModel(ShortChunkCNN):
    """Concat: the CNN's 1x1 block outputs cf_dim, concatenated with the raw item factor (as in the original)."""

    input_type = 'hybrid'

    def __init__(self, word_dim=300, cf_dim=CF_DIM, n_channels=128):
        super().__init__(word_dim, cf_dim, n_channels)
        self.cat_fc1 = nn.Linear(2 * cf_dim, HIDDEN_DIM)
        self.cat_bn1 = nn.BatchNorm1d(HIDDEN_DIM)
        self.cat_fc2 = nn.Linear(HIDDEN_DIM, EMBEDDING_DIM)

    def cat_to_embedding(self, cat):
        return projection(cat, self.cat_fc1, self.cat_bn1, self.cat_fc2, self.dropout)

    def song_to_embedding(self, spec, cf):
        return self.cat_to_embedding(torch.cat([self.spec_to_embedding(spec), cf], dim=-1))

    def chunks_to_embedding(self, spec_chunks, cf):
        return self.cat_to_embedding(torch.cat([self.mean_chunk_embedding(spec_chunks), cf], dim=-1))


MODELS = {m.input_type: m for m in (AudioModel, CFModel, HybridModel)}


def build_model(input_type, word_dim=300, cf_dim=CF_DIM, n_channels=128, channels_last=False):
    model = MODELS[input_type](word_dim=word_dim, cf_dim=cf_dim, n_channels=n_channels)
    if channels_last and isinstance(model, ShortChunkCNN):
        model.use_channels_last()
    return model


def input_type_of_state_dict(state_dict):
    """Which model a (prefix-free) state_dict belongs to, read from its parameter names."""
    if 'cat_fc1.weight' in state_dict:
        return 'hybrid'
    if 'cf_fc1.weight' in state_dict:
        return 'cf'
    if 'layer1.conv.weight' in state_dict:
        return 'spec'
    return None
