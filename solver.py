"""The LightningModule: model, triplet (or InfoNCE) loss, in-batch negative sampling, and retrieval metrics.

    from solver import Solver
    solver = Solver(input_type='spec', word_dim=300, is_weighted=True)
    trainer.fit(solver, datamodule=dm)

Negatives are drawn on the batch's device, vectorised: for anchor tag i, any song j of the batch that does not carry
tag i, uniformly (random) or with probability proportional to (cos(tag_i, song_j) + 1) / 2 (the original's
"weighted" sampling). A row without any valid negative is left out of the loss and counted in the logs.
Validation and test share one path: embed the songs, gather them from every process, score every tag against
every song by cosine, and compute per-tag P@10, ROC-AUC and AP (means logged as `p@10`, `roc_auc`, `map`).
"""
import csv
import io
import json
import math
import os
import random

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from errors import UserError
from metrics import cosine_scores, retrieval_metrics, summarise
from model import build_model
from file_io import atomic_save_npy, atomic_write, atomic_write_bytes, write_error


def negative_weights(tag_emb, song_emb, tag_index, song_labels, weighted):
    """(B, B) sampling weights of song j as the negative of row i; zero where song j carries tag i."""
    is_valid = song_labels[:, tag_index].T == 0
    if not weighted:
        return is_valid.float()
    similarity = cosine_scores(tag_emb.detach().float(), song_emb.detach().float())
    # a floor keeps a valid negative drawable even at cosine -1, where (cos + 1) / 2 is exactly 0
    return is_valid * ((similarity + 1) / 2).clamp_min(1e-6)


def sample_negatives(tag_emb, song_emb, tag_index, song_labels, weighted=False):
    """One negative per row: (negative song index (B,), rows that have one (B,) bool)."""
    weights = negative_weights(tag_emb, song_emb, tag_index, song_labels, weighted)
    # inverse-CDF sampling: several times faster than torch.multinomial on small rows, and exact; with right=True
    # the first cumulative weight above u * total always belongs to a song of positive weight
    cumulative = weights.cumsum(dim=1)
    total = cumulative[:, -1:]
    u = torch.rand(total.shape, device=weights.device, dtype=cumulative.dtype) * total
    negative = torch.searchsorted(cumulative, u, right=True).squeeze(1).clamp_max(weights.shape[1] - 1)
    return negative, total.squeeze(1) > 0


def negative_diagnostics(tag_emb, song_emb, tag_index, song_labels, negative, has_negative, losses):
    """What the sampler did in one step, for the logs: the mean cosine (tag_i, drawn negative) and the mean cosine
    (tag_i, a valid negative drawn uniformly), exactly (an average over the valid songs, no extra draw, so the
    random stream and the training are untouched), over the rows that have a negative; and the share of those rows
    whose triplet loss is zero (negatives already easy enough to teach nothing). losses: (rows with a negative,)."""
    with torch.no_grad():
        similarity = cosine_scores(tag_emb.detach().float(), song_emb.detach().float())[has_negative]
        valid = (song_labels[:, tag_index].T == 0)[has_negative].float()
        drawn = similarity.gather(1, negative[has_negative].unsqueeze(1)).squeeze(1)
        uniform = (similarity * valid).sum(dim=1) / valid.sum(dim=1)
        return {'negative_cos': drawn.mean(), 'uniform_negative_cos': uniform.mean(),
                'zero_loss_rows': (losses == 0).float().mean()}


def triplet_loss(anchor, positive, negative, margin):
    """Per-row relu(margin - cos(anchor, positive) + cos(anchor, negative))."""
    return F.relu(margin - F.cosine_similarity(anchor, positive, dim=-1)
                  + F.cosine_similarity(anchor, negative, dim=-1))


def infonce_loss(tag_emb, song_emb, tag_index, song_labels, logit_scale):
    """Per-row InfoNCE of tag i against the batch's songs; song i is the positive, and every other song that
    carries tag i is removed from the denominator (multi-label: it is no negative)."""
    logits = cosine_scores(tag_emb, song_emb) * logit_scale.exp()
    carries = song_labels[:, tag_index].T > 0
    carries.fill_diagonal_(False)
    logits = logits.masked_fill(carries, float('-inf'))
    return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device), reduction='none')


def rng_state(device):
    """Every generator a training step may draw from: torch CPU, torch CUDA (of `device`), numpy, python."""
    return {'torch': torch.get_rng_state(), 'numpy': np.random.get_state(), 'python': random.getstate(),
            'cuda': torch.cuda.get_rng_state(device) if device.type == 'cuda' else None}


def set_rng_state(state, device):
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if state.get('cuda') is not None and device.type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'], device)


def rng_state_to_checkpoint(state):
    """Tensors and plain lists only, so the checkpoint still loads with torch.load(weights_only=True)."""
    name, keys, pos, has_gauss, cached = state['numpy']
    version, internal, gauss_next = state['python']
    return {'torch': state['torch'], 'cuda': state['cuda'],
            'numpy': [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            'python': [version, list(internal), gauss_next]}


def rng_state_from_checkpoint(saved):
    name, keys, pos, has_gauss, cached = saved['numpy']
    version, internal, gauss_next = saved['python']
    return {'torch': saved['torch'], 'cuda': saved.get('cuda'),
            'numpy': (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached),
            'python': (version, tuple(internal), gauss_next)}


class Solver(pl.LightningModule):
    # pragma: no mutate start (save_hyperparameters reads the arguments from this frame, which mutmut's wrapper hides)
    def __init__(self, input_type='spec', word_dim=300, cf_dim=200, n_channels=128, margin=0.4, lr=1e-4,
                 weight_decay=1e-4, is_weighted=False, loss='triplet', temperature=0.07, result_path=None,
                 config=None, channels_last=False):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(input_type, word_dim=word_dim, cf_dim=cf_dim, n_channels=n_channels,
                                 channels_last=channels_last)
        if loss == 'infonce':
            self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.eval_outputs = []
        self.last_eval = None
        self.training_rng = None  # the random stream of the training steps (see on_train_batch_start)
        self.drawn = []  # the epoch's training samples this process trained on (checked across DDP ranks)

    # pragma: no mutate end
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # ------------------------------------------------------------------ random state, saved with every checkpoint
    # Training steps (dropout, negatives) draw from a stream of their own, set before each step and kept at the end
    # of training_step (after its last draw, before any callback can save a checkpoint): the draws Lightning and
    # the DataLoader make between steps (an iterator's seed each epoch, one fewer after a resume) never reach it, so
    # a resumed run draws exactly what the interrupted one would have.
    def on_train_batch_start(self, batch, batch_idx):
        if self.training_rng is not None:
            set_rng_state(self.training_rng, self.device)

    def on_save_checkpoint(self, checkpoint):
        checkpoint['training_rng'] = rng_state_to_checkpoint(self.training_rng or rng_state(self.device))

    def on_load_checkpoint(self, checkpoint):
        if 'training_rng' in checkpoint:
            self.training_rng = rng_state_from_checkpoint(checkpoint['training_rng'])

    # ------------------------------------------------------------------ training
    def training_step(self, batch, batch_idx):
        tag_emb, song_emb = self.model(batch['tag_vector'], batch['spec'], batch['cf'])
        if self.hparams.loss == 'infonce':
            with torch.no_grad():
                self.logit_scale.clamp_(0, math.log(100))
            losses = infonce_loss(tag_emb, song_emb, batch['tag'], batch['labels'], self.logit_scale)
            self.log('train/temperature', 1 / self.logit_scale.exp(), on_step=True, on_epoch=False)
            skipped = torch.zeros((), device=self.device)
        else:
            negative, has_negative = sample_negatives(tag_emb, song_emb, batch['tag'], batch['labels'],
                                                      self.hparams.is_weighted)
            losses = triplet_loss(tag_emb, song_emb, song_emb[negative], self.hparams.margin)[has_negative]
            skipped = (~has_negative).sum().float()
            if has_negative.any():
                diagnostics = negative_diagnostics(tag_emb, song_emb, batch['tag'], batch['labels'], negative,
                                                   has_negative, losses)
                for name, value in diagnostics.items():
                    self.log(f'train/{name}', value, on_step=False, on_epoch=True, batch_size=len(losses))
        loss = losses.mean() if len(losses) else (tag_emb.sum() + song_emb.sum()) * 0.0
        if not torch.isfinite(loss):
            raise UserError(f'the training loss became {loss.item()} at step {self.global_step} (epoch '
                            f'{self.current_epoch}); training stopped, the checkpoints written before are kept. '
                            'Lower --lr, or check the inputs for extreme values')
        self.log('train/loss', loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(tag_emb))
        self.log('train/rows_without_negative', skipped, on_step=False, on_epoch=True, reduce_fx='sum')
        self.training_rng = rng_state(self.device)
        if 'sample' in batch:
            self.drawn.append(batch['sample'])
        return loss

    def on_train_epoch_end(self):
        """Under DDP, prove on rank 0 that no two ranks trained on one sample of the epoch: they would repeat one
        another's draws (the generator of a sample is seeded by its number)."""
        drawn, self.drawn = self.drawn, []
        if self.trainer.world_size <= 1 or not drawn:
            return
        every = self.all_gather(torch.cat(drawn))  # (world_size, samples per rank): every rank runs as many steps
        unique = int(torch.unique(every).numel())
        if self.trainer.is_global_zero:
            ranks, per_rank = every.shape
            print(f'epoch {self.current_epoch}: {ranks} ranks trained on {ranks * per_rank} samples ({per_rank} '
                  f'each), {unique} distinct' + ('' if unique == every.numel() else
                                                 f'; warning: {every.numel() - unique} drawn on two ranks'),
                  flush=True)

    # ------------------------------------------------------------------ validation and test: one path
    def validation_step(self, batch, batch_idx):
        self._embed_songs(batch)

    def test_step(self, batch, batch_idx):
        self._embed_songs(batch)

    def on_validation_epoch_end(self):
        self._evaluate('valid')

    def on_test_epoch_end(self):
        self._evaluate('test')

    def _embed_songs(self, batch):
        emb = self.model.chunks_to_embedding(batch['spec'], batch['cf'])
        self.eval_outputs.append((batch['index'], emb.float(), batch['labels']))

    def _gather_songs(self):
        """Song embeddings and labels of the whole split, in split order, from every process."""
        index, emb, labels = (torch.cat(parts) for parts in zip(*self.eval_outputs))
        self.eval_outputs = []
        if self.trainer.world_size > 1:
            index, emb, labels = (self.all_gather(t).flatten(0, 1) for t in (index, emb, labels))
        # a distributed sampler pads the split by repeating songs: keep each song once
        order = torch.argsort(index)
        index, emb, labels = index[order], emb[order], labels[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return emb[first], labels[first]

    def tag_embeddings(self):
        vectors = self.trainer.datamodule.tag_vectors.to(self.device, self.model.fc1.weight.dtype)  # 64-true too
        return self.model.word_to_embedding(vectors)

    def _evaluate(self, stage):
        if not self.eval_outputs:
            return
        song_emb, labels = self._gather_songs()
        scores = cosine_scores(self.tag_embeddings().float(), song_emb).cpu().numpy()
        labels = labels.T.cpu().numpy()
        per_tag = retrieval_metrics(scores, labels)
        dm = self.trainer.datamodule
        groups = {}
        if dm.data.categories is not None:
            groups['category'] = dm.data.categories
        if dm.unseen_tags:
            groups['zeroshot'] = np.where(dm.seen_mask, 'seen', 'unseen')
        summary = summarise(per_tag, groups)
        # what scores drawn at random would reach: MAP and P@10 both equal a tag's prevalence in expectation;
        # overall and per group, over the tags the means count (those with an AP)
        prevalence = np.where(np.isfinite(per_tag['ap']), labels.mean(axis=1), np.nan)
        baseline = summarise({'map': prevalence}, groups)
        summary['random_baseline'] = {'map': baseline.pop('all')['map'] if np.isfinite(prevalence).any() else None}
        summary['random_baseline'].update({name: {g: v['map'] for g, v in by_group.items()}
                                           for name, by_group in baseline.items()})
        for name in ('p@10', 'roc_auc', 'map'):
            self.log(name, summary['all'][name], prog_bar=True, sync_dist=False)
        for group_name, by_group in summary.items():
            if group_name not in ('all', 'random_baseline'):
                for group, values in by_group.items():
                    self.log(f'{stage}/map/{group_name}/{group}', values['map'], sync_dist=False)
        self.last_eval = {'scores': scores, 'labels': labels, 'per_tag': per_tag, 'summary': summary}
        if stage == 'test' and self.trainer.is_global_zero and self.hparams.result_path:
            self.write_results(self.hparams.result_path, dm)

    def write_results(self, result_path, dm):
        """scores.npy (tags x test songs, rows in tags.npy order), per_tag.csv, then summary.json: each written
        atomically, summary.json last, so that its presence means the results are complete."""
        per_tag, summary = self.last_eval['per_tag'], self.last_eval['summary']
        summary_file = os.path.join(result_path, 'summary.json')
        if os.path.exists(summary_file):  # an earlier TEST's: it must not vouch for outputs this one fails to write
            os.remove(summary_file)
        atomic_save_npy(os.path.join(result_path, 'scores.npy'), self.last_eval['scores'].astype(np.float32))
        table = io.StringIO(newline='')
        writer = csv.writer(table)
        columns = ['tag'] + (['category'] if dm.data.categories is not None else []) + \
                  (['zeroshot'] if dm.unseen_tags else []) + ['p@10', 'roc_auc', 'ap']
        writer.writerow(columns)
        for i, tag in enumerate(dm.tags):
            row = [tag]
            if dm.data.categories is not None:
                row.append(dm.data.categories[i])
            if dm.unseen_tags:
                row.append('seen' if dm.seen_mask[i] else 'unseen')
            writer.writerow(row + [f'{per_tag[m][i]:.6f}' for m in ('p@10', 'roc_auc', 'ap')])
        atomic_write_bytes(os.path.join(result_path, 'per_tag.csv'), table.getvalue().encode())
        settings = {k: v for k, v in (self.hparams.config or {}).items()}
        settings.update({k: v for k, v in self.hparams.items() if k != 'config'})
        atomic_write_bytes(summary_file,
                           json.dumps({'means': summary, 'n_test_songs': int(self.last_eval['scores'].shape[1]),
                                       'settings': settings}, indent=1, default=str).encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint beside its final path, flushed to disk, then renamed into place: a kill or a full
    disk leaves the previous checkpoint whole (never a truncated one), and a failed write is one line naming it."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = os.fspath(path)
        try:
            os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        except OSError as error:
            raise write_error(path, error) from None
        payload = io.BytesIO()  # serialised first: torch.save hides a full disk behind a RuntimeError of its zip writer
        torch.save(checkpoint, payload)
        atomic_write(path, lambda f: f.write(payload.getbuffer()))
