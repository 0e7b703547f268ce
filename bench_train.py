"""Training speed, measured side by side in one run: the model step per precision and layout, the whole Trainer
against the model step, and the DataLoader's supply rate (run through bench.py).

    python bench.py --only train loader e2e                  # all three, a synthetic dataset in a temp folder
    python bench.py --only e2e --data_path data/demo --repeat 5

- train: one training step (forward, in-batch negatives, triplet loss, backward, Adam step) of the acoustic model
  on random tensors, float32 vs bf16 autocast vs bf16 autocast with channels-last tensors.
- e2e: steps/s of `trainer.fit` (data loading, anchor and negative sampling, logging included; no validation)
  divided by the steps/s of the model step above at the same width, batch and precision (1.0: no overhead).
- loader: training samples per second that the DataLoader supplies from memory-mapped spectrograms with 0, 1, 2
  worker processes (the crops only, no model).
"""
import logging
import os
import tempfile
import time

import numpy as np
import pytorch_lightning as pl
import torch

# (base width, batch): the demo budget of run.sh and experiments.py, and a wider model at a smaller batch
SIZES = [(32, 64), (64, 32)]
FAST_PATHS = {'fp32': ('32-true', False), 'bf16': ('bf16-mixed', False), 'bf16+cl': ('bf16-mixed', True)}


def device():
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def autocast(precision):
    return torch.autocast(device().type, dtype=torch.bfloat16, enabled=precision == 'bf16-mixed')


def model_step(width, batch, precision, channels_last, word_dim=50, input_length=173):
    """A closure running one training step of the acoustic model on fixed random inputs."""
    from model import build_model
    from solver import sample_negatives, triplet_loss
    torch.manual_seed(0)
    dev = device()
    model = build_model('spec', word_dim=word_dim, n_channels=width, channels_last=channels_last).to(dev).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    spec, words = torch.randn(batch, 128, input_length, device=dev), torch.randn(batch, word_dim, device=dev)
    tags = torch.randint(0, 50, (batch,), device=dev)
    labels = torch.nn.functional.one_hot(tags, 50).float()

    def step():
        with autocast(precision):
            tag_emb, song_emb = model(words, spec, None)
            negative, has = sample_negatives(tag_emb, song_emb, tags, labels, weighted=True)
            loss = triplet_loss(tag_emb, song_emb, song_emb[negative], 0.4)[has].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if dev.type == 'cuda':
            torch.cuda.synchronize()
    return step


def seconds_per_step(step, repeat):
    step()  # warm-up: oneDNN/cuDNN pick their kernels on the first call
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_train_step(repeat=3, sizes=SIZES):
    print(f'\ntraining step of the acoustic model on {device()} ({torch.get_num_threads()} threads), median of '
          f'{repeat}')
    print(f'{"width":>5} {"batch":>5} {"path":<8} {"s/step":>8} {"samples/s":>10} {"speed-up":>9}')
    results = {}
    for width, batch in sizes:
        for name, (precision, channels_last) in FAST_PATHS.items():
            seconds = seconds_per_step(model_step(width, batch, precision, channels_last), repeat)
            results[width, batch, name] = seconds
            base = results[width, batch, 'fp32']
            print(f'{width:>5} {batch:>5} {name:<8} {seconds:>8.3f} {batch / seconds:>10.1f} {base / seconds:>8.2f}x')
    return results


class StepTimer(pl.Callback):
    """Wall time from the start of batch `skip` to the end of the last batch (warm-up steps left out)."""

    def __init__(self, skip):
        self.skip, self.start, self.end, self.steps = skip, None, None, 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.skip:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx >= self.skip:
            self.end, self.steps = time.perf_counter(), batch_idx - self.skip + 1


def trainer_steps_per_second(data_path, width, batch, precision, channels_last, steps, num_workers=0, skip=2):
    """steps/s of trainer.fit as main.py sets it up (logging every 10 steps, CSV logger), validation off."""
    from pytorch_lightning.loggers import CSVLogger

    from data_loader import TagRetrievalDataModule
    from solver import Solver
    pl.seed_everything(0, workers=True, verbose=False)
    dm = TagRetrievalDataModule(data_path, 'spec', 'google', is_balanced=True, batch_size=batch,
                                num_workers=num_workers, num_chunk=4, epoch_size=batch * (steps + skip), seed=0)
    data = dm.load(('train', 'valid'))
    solver = Solver('spec', word_dim=data.word_dim, n_channels=width, lr=1e-3, is_weighted=True,
                    channels_last=channels_last)
    timer = StepTimer(skip)
    with tempfile.TemporaryDirectory() as out:
        trainer = pl.Trainer(default_root_dir=out, accelerator='auto', devices=1, precision=precision, max_epochs=1,
                             limit_val_batches=0, logger=CSVLogger(out, name='logs'), callbacks=[timer],
                             enable_checkpointing=False, reload_dataloaders_every_n_epochs=1,
                             num_sanity_val_steps=0, log_every_n_steps=10, enable_model_summary=False,
                             enable_progress_bar=True)
        trainer.fit(solver, datamodule=dm)
    return timer.steps / (timer.end - timer.start), data.word_dim


def bench_end_to_end(data_path=None, repeat=3, steps=12, num_workers=0, sizes=SIZES):
    logging.getLogger('pytorch_lightning').setLevel(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_path = data_path or synthetic_data(tmp)
        for width, batch in sizes:
            for name, (precision, channels_last) in FAST_PATHS.items():
                if name == 'bf16':
                    continue
                fit, word_dim = trainer_steps_per_second(data_path, width, batch, precision, channels_last, steps,
                                                         num_workers)
                pure = 1 / seconds_per_step(model_step(width, batch, precision, channels_last, word_dim), repeat)
                rows.append(f'{width:>5} {batch:>5} {name:<8} {fit:>12.3f} {pure:>8.3f} {fit / pure:>6.2f}')
    print(f'\nend to end: trainer.fit steps/s over {steps} steps ({num_workers} workers, {data_path}) vs the model '
          'step')
    print(f'{"width":>5} {"batch":>5} {"path":<8} {"fit steps/s":>12} {"step/s":>8} {"ratio":>6}')
    print('\n'.join(rows))


def synthetic_data(folder):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tests'))
    from synthetic_data import write_dataset
    root = os.path.join(folder, 'data')
    write_dataset(root, n_songs=300, n_tags=20, word_dim=50, n_frames=1292)  # 30 s songs, like the demo's
    return root


def loader_samples_per_second(data_path, num_workers, batches=30, batch=64):
    from torch.utils.data import DataLoader

    from data_loader import SplitData, TrainDataset
    data = SplitData(data_path, input_type='spec', splits=('train',))
    dataset = TrainDataset(data, True, 173, epoch_size=batch * (batches + 2 * max(num_workers, 1)))
    loader = iter(DataLoader(dataset, batch_size=batch, num_workers=num_workers))
    for _ in range(max(num_workers, 1)):  # workers started and their first batches done
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def bench_loader(data_path=None, batches=30):
    with tempfile.TemporaryDirectory() as tmp:
        data_path = data_path or synthetic_data(tmp)
        print(f'\nDataLoader supply, batch 64 crops of 173 frames from memory-mapped spectrograms ({data_path})')
        for workers in (0, 1, 2):
            rate = loader_samples_per_second(data_path, workers, batches)
            print(f'{workers} workers: {rate:8.0f} samples/s')
