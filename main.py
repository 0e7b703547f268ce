"""Train or test a tag-based music retrieval model: wires the DataModule, the Solver and a Lightning Trainer.

    python -u main.py --mode TRAIN --data_path data/demo --input_type spec --is_balanced True --is_weighted True
    python -u main.py --mode TEST  --data_path data/demo --model_load_path checkpoints/best.ckpt
    python -u main.py --mode TRAIN --data_path data/demo --ckpt_path checkpoints/last.ckpt   # resume exactly

Every flag of the original keeps its name and default; `python main.py --help` lists them all.
"""
import argparse
import contextlib
import json
import os
import sys
import warnings
from datetime import timedelta

from cli_args import (BOOL, HelpFormatter, chunk_frames, devices_arg, int_or_float, learning_rate, non_negative_float,
                      non_negative_int, positive_float, positive_int, public_config, seed_arg, str2bool, take_neptune_key,
                      usage_examples)
from errors import UserError, exit_on_user_error
from tracking import DEFAULT_EXPERIMENT, DEFAULT_STORE, log_test_results, make_logger, tracking_record

PRECISIONS = ['32-true', '32', 'bf16-mixed', 'bf16-true', '16-mixed', '16-true', '64-true', '64']


def max_steps_arg(value):
    return -1 if str(value).strip() == '-1' else positive_int(value)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=usage_examples(__doc__),
                                     formatter_class=HelpFormatter)
    add = parser.add_argument
    add('--num_workers', type=non_negative_int, default=0, help='DataLoader worker processes')
    add('--mode', type=str, default='TRAIN', choices=['TRAIN', 'TEST'], help='train, or test a checkpoint')

    add_original_arguments(parser)
    new = parser.add_argument_group('added by this reimplementation')
    add_training_arguments(new)
    add_tracking_arguments(new)
    add_schedule_arguments(new)
    return parser


def add_original_arguments(parser):
    """The original's flags, with its defaults."""
    model = parser.add_argument_group('model parameters (the original\'s)')
    model.add_argument('--batch_size', type=positive_int, default=128, help='triplets per step (eval: batch_size // num_chunk songs)')
    model.add_argument('--num_chunk', type=positive_int, default=8, help='chunks averaged per song in evaluation')
    model.add_argument('--input_length', type=chunk_frames, default=173, help='frames per chunk (173 = ~4 s)')
    model.add_argument('--margin', type=non_negative_float, default=0.4, help='cosine triplet margin')
    model.add_argument('--input_type', type=str, default='spec', choices=['spec', 'cf', 'hybrid'],
                       help='song branch: acoustic, cultural (CF) or both')
    model.add_argument('--w2v_type', type=str, default='google', choices=['google', 'music'],
                       help='word vectors of the tags: <w2v_type>_emb.pkl')
    model.add_argument('--is_balanced', type=str2bool, default=False, metavar=BOOL, help='draw anchor tags uniformly')
    model.add_argument('--is_weighted', type=str2bool, default=False, metavar=BOOL, help='distance-weighted negatives')
    model.add_argument('--is_subset', type=str2bool, default=False, metavar=BOOL, help='read the sub_* split files')

    train = parser.add_argument_group('training parameters (the original\'s)')
    train.add_argument('--n_epochs', type=positive_int, default=200, help='epochs of --epoch_size samples')
    train.add_argument('--gpu_id', type=str, default='0', help='GPU indices (e.g. 0 or 0,1; -1: every GPU, as the original); CPU when none')
    train.add_argument('--lr', type=learning_rate, default=1e-4, help='Adam learning rate')
    train.add_argument('--model_save_path', type=str, default='./checkpoints',
                       help='best.ckpt, last.ckpt, config.json and logs go here')
    train.add_argument('--model_load_path', type=str, default='.', help='checkpoint to TEST')
    train.add_argument('--data_path', type=str, default='.', help='folder of the split files (README: data layout)')
    train.add_argument('--neptune_project', type=str, default='.', help='workspace/project; enables Neptune')
    train.add_argument('--neptune_api_key', type=str, default='.', help='enables Neptune; prefer the environment variable NEPTUNE_API_TOKEN (it wins when both are set). '
                       'Never printed or saved')


def add_training_arguments(new):
    """Seeds, model width, loss, devices and precision, resuming."""
    new.add_argument('--seed', type=seed_arg, default=0, help='seeds torch, numpy and every training draw')
    new.add_argument('--epoch_size', type=positive_int, default=10000, help='training samples per epoch')
    new.add_argument('--n_channels', type=positive_int, default=128, help='CNN base width (layers use 1x,2x,4x)')
    new.add_argument('--weight_decay', type=non_negative_float, default=1e-4, help='Adam weight decay')
    new.add_argument('--loss', type=str, default='triplet', choices=['triplet', 'infonce'],
                     help='cosine triplet margin loss, or InfoNCE over in-batch songs')
    new.add_argument('--temperature', type=positive_float, default=0.07, help='initial InfoNCE temperature (learned)')
    new.add_argument('--zeroshot_tags', type=str, default=None,
                     help='file of tags (one a line) or a count drawn with --seed: never training anchors')
    new.add_argument('--accelerator', type=str, default='auto', help='auto, cpu, gpu, cuda, mps...')
    new.add_argument('--devices', type=devices_arg, default=None,
                     help='count or list; None: --gpu_id on a GPU, 1 on CPU')
    new.add_argument('--num_nodes', type=positive_int, default=1, help='machines for multi-node DDP')
    new.add_argument('--strategy', type=str, default='auto', help='auto, ddp, ddp_spawn, ...')
    new.add_argument('--ddp_timeout', type=positive_int, default=1800,
                     help='DDP: seconds to wait for the other nodes at the rendezvous (and at each collective)')
    new.add_argument('--precision', type=str, default='32-true', choices=PRECISIONS,
                     help='Lightning precision: bf16-mixed is the fast path on CPUs with bf16 and on recent GPUs')
    new.add_argument('--channels_last', type=str2bool, default=False, metavar=BOOL,
                     help='channels-last (NHWC) CNN tensors: the same model, faster convolutions')
    new.add_argument('--cf_standardise', type=str2bool, default=False, metavar=BOOL,
                     help='item factors to zero mean, unit variance per dimension (the original: raw); TEST '
                          'follows the checkpoint')
    new.add_argument('--ckpt_path', type=str, default=None, help='resume TRAIN from this checkpoint')
    new.add_argument('--overwrite', type=str2bool, default=False, metavar=BOOL,
                     help='TRAIN into a --model_save_path that holds another run: delete its checkpoints first')


def add_tracking_arguments(new):
    """Where runs are logged and results written."""
    new.add_argument('--logger', type=str, default=None, choices=['tensorboard', 'csv', 'mlflow', 'neptune', 'none'],
                     help='None: neptune when --neptune_project/--neptune_api_key are given, else tensorboard')
    new.add_argument('--mlflow_uri', type=str, default=None,
                     help='--logger mlflow: tracking store or server (http://HOST:PORT); None: '
                          f'sqlite:///{DEFAULT_STORE} with artifacts in mlartifacts/ beside it')
    new.add_argument('--experiment_name', type=str, default=DEFAULT_EXPERIMENT, help='--logger mlflow: experiment')
    new.add_argument('--run_name', type=str, default=None,
                     help='--logger mlflow: run name; None: the last folder of --model_save_path')
    new.add_argument('--neptune_mode', type=str, default='async', choices=['async', 'offline', 'debug'],
                     help='offline records under .neptune/ with no network')
    new.add_argument('--result_path', type=str, default=None,
                     help='where TEST writes per_tag.csv, summary.json, scores.npy; None: <checkpoint dir>/test')


def add_schedule_arguments(new):
    """How long TRAIN runs, when it stops and validates, how much of each split it reads."""
    new.add_argument('--max_steps', type=max_steps_arg, default=-1, help='stop after this many steps (-1: no limit)')
    new.add_argument('--early_stop_patience', type=non_negative_int, default=0,
                     help='stop TRAIN once the valid MAP has not improved by more than --early_stop_min_delta for '
                          'this many validations in a row; best.ckpt stays the best (0: off, the original)')
    new.add_argument('--early_stop_min_delta', type=non_negative_float, default=0.0,
                     help='with --early_stop_patience: the valid MAP gain that counts as an improvement')
    new.add_argument('--keep_best_until_step', type=max_steps_arg, default=-1,
                     help='also write best_until_N.ckpt: the best valid MAP among the validations up to step N, '
                          'i.e. what a run with that budget would have kept (-1: off)')
    new.add_argument('--limit_train_batches', type=int_or_float, default=1.0, help='batches (int) or fraction per epoch')
    new.add_argument('--limit_val_batches', type=int_or_float, default=1.0,
                     help='batches (int) or fraction per validation: a validation subset, the first songs of the split')
    new.add_argument('--check_val_every_n_epoch', type=positive_int, default=1,
                     help='validate (and select best.ckpt) every N epochs; the original: every epoch')
    new.add_argument('--limit_test_batches', type=int_or_float, default=1.0, help='batches (int) or fraction in TEST')


def resolve_devices(config):
    import torch
    accelerator = config.accelerator
    if accelerator == 'auto':
        accelerator = 'gpu' if torch.cuda.is_available() else 'cpu'
    if accelerator in ('gpu', 'cuda') and not torch.cuda.is_available():
        raise UserError(f'--accelerator {config.accelerator}: no CUDA device is visible; use --accelerator cpu')
    devices = config.devices
    if devices is None and accelerator in ('gpu', 'cuda') and config.gpu_id.strip() == '-1':
        devices = -1  # the original's Lightning read --gpu_id -1 as every visible GPU
    if devices is None:
        try:
            devices = [int(g) for g in config.gpu_id.split(',') if g.strip()] if accelerator in ('gpu', 'cuda') else 1
        except ValueError:
            raise UserError(f'--gpu_id {config.gpu_id!r}: expected GPU indices such as 0 or 0,1')
    return accelerator, devices


DATA_FLAGS = ('data_path', 'input_type', 'w2v_type', 'is_subset', 'is_balanced', 'batch_size', 'num_workers',
              'input_length', 'num_chunk', 'epoch_size', 'seed', 'cf_standardise')
TRAINING_FLAGS = ('margin', 'lr', 'weight_decay', 'is_weighted', 'loss', 'temperature')


def prepare(config, splits, checkpoint_path):
    """DataModule with its data checked, the checkpoint (if any) read and checked against it, the unseen tags."""
    from checkpoint import check_fits, read_checkpoint
    from data_loader import TagRetrievalDataModule, choose_zeroshot_tags

    dm = TagRetrievalDataModule(**{k: getattr(config, k) for k in DATA_FLAGS})
    data = dm.load(splits)  # checks every input before any work
    model_state, hparams = read_checkpoint(checkpoint_path) if checkpoint_path else ({}, {})
    trained = hparams.get('config') or {}
    if config.mode == 'TEST' and trained.get('cf_standardise') and not config.cf_standardise:
        # score on the item factors as the checkpoint was trained on them
        config.cf_standardise = dm.cf_standardise = True
        dm.data = None
        data = dm.load(splits)
    if checkpoint_path:
        check_fits(checkpoint_path, model_state, config.input_type, config.w2v_type, data,
                   n_channels=None if config.mode == 'TEST' else config.n_channels)
    fallback = trained.get('unseen_tags') or []
    dm.unseen_tags = choose_zeroshot_tags(config.zeroshot_tags, data.tags, config.seed, fallback)
    return dm, data, model_state, hparams


def make_strategy(config):
    """--strategy, with --ddp_timeout for the DDP family (Lightning's own default otherwise): a node whose peers
    never come fails after that long instead of the default half hour."""
    from pytorch_lightning.strategies import StrategyRegistry
    from pytorch_lightning.strategies.ddp import DDPStrategy
    entry = StrategyRegistry[config.strategy] if config.strategy in StrategyRegistry else None
    if entry is None or entry['strategy'] is not DDPStrategy:  # ddp, ddp_spawn, ddp_fork, ddp_find_unused...
        return config.strategy
    return DDPStrategy(**entry['init_params'], timeout=timedelta(seconds=config.ddp_timeout))


def make_trainer(config, callbacks=(), logger=False):
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from solver import AtomicCheckpointIO
    accelerator, devices = resolve_devices(config)
    if config.max_steps != -1:  # the rerun of a resumed epoch's end (plateau_stopper) has no MAP: nothing is wrong
        warnings.filterwarnings('ignore', message=r"`ModelCheckpoint\(monitor='map'\)` could not find the monitored")
    settings = dict(default_root_dir=config.model_save_path, accelerator=accelerator, devices=devices,
                    plugins=[AtomicCheckpointIO()], num_nodes=config.num_nodes, strategy=make_strategy(config),
                    precision=config.precision, max_epochs=config.n_epochs, max_steps=config.max_steps,
                    limit_train_batches=config.limit_train_batches, limit_val_batches=config.limit_val_batches,
                    limit_test_batches=config.limit_test_batches, logger=logger, callbacks=list(callbacks),
                    check_val_every_n_epoch=config.check_val_every_n_epoch,
                    reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0, log_every_n_steps=10,
                    enable_model_summary=False)  # train() prints one line instead of the 12-line table
    try:
        return pl.Trainer(**settings)
    except (ValueError, MisconfigurationException) as e:  # a flag Lightning refuses: --strategy, --accelerator...
        raise UserError(f'{str(e).strip().splitlines()[0]} (check --accelerator, --devices, --strategy, '
                        '--num_nodes, --precision)')


@contextlib.contextmanager
def rendezvous_errors(trainer, config):
    """A DDP node that cannot meet the others (no node 0 listening, a peer that never comes, a port taken): one
    line naming the address, port and wait instead of torch's traceback."""
    import torch.distributed as dist
    try:
        yield
    except (dist.DistNetworkError, dist.DistStoreError) as error:
        env = trainer.strategy.cluster_environment
        raise UserError(f'DDP node {trainer.node_rank} of {config.num_nodes} could not meet the others at the '
                        f'rendezvous {env.main_address}:{env.main_port} within --ddp_timeout {config.ddp_timeout} s '
                        f'({str(error).strip().splitlines()[0]}); start every node with MASTER_ADDR = node 0\'s '
                        'address, reachable from all, and one free MASTER_PORT, within that time of each other, or '
                        'raise --ddp_timeout') from None


def run_config(config, dm):
    accelerator, devices = resolve_devices(config)
    return dict(public_config(config), unseen_tags=dm.unseen_tags, accelerator=accelerator, devices=devices)


@exit_on_user_error
def train(config):
    """Fit from scratch (or resume --ckpt_path); writes best.ckpt, last.ckpt and config.json."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from checkpoint import claim_run_folder
    from file_io import atomic_write_bytes, remove_stale_partials, require_output_dir
    from solver import Solver
    pl.seed_everything(config.seed, workers=True)
    if config.batch_size == 1 or config.epoch_size == 1:  # a last batch of one is dropped (data_loader): none left
        raise UserError(f'--batch_size {config.batch_size} --epoch_size {config.epoch_size}: a batch of one sample '
                        'cannot train (BatchNorm needs two); use at least 2 of each')
    dm, data, _, hparams = prepare(config, ('train', 'valid'), config.ckpt_path)
    require_output_dir(config.model_save_path, '--model_save_path')  # after the input checks: no stray folder
    claim_run_folder(config.model_save_path, config.ckpt_path, config.overwrite)  # never two runs in one folder
    remove_stale_partials(config.model_save_path)  # a checkpoint write cut short by a kill
    checkpoint_cb = ModelCheckpoint(dirpath=config.model_save_path, filename='best', monitor='map', mode='max',
                                    save_top_k=1, enable_version_counter=False)
    # last.ckpt after every epoch, whether or not the valid MAP improved: the state a resume continues from
    last_cb = ModelCheckpoint(dirpath=config.model_save_path, filename='last', monitor=None, save_top_k=1,
                              enable_version_counter=False)
    stopper = plateau_stopper(config)
    optional = [c for c in (stopper, budget_checkpoint(config)) if c]
    trainer = make_trainer(config, [checkpoint_cb, last_cb] + optional)
    # made once the Trainer has set this process's rank (node 1 of a hand-started multi-node run reads rank 0 from
    # the environment until then): one MLflow run for all nodes, created by rank 0; before the config is saved,
    # which records the run id
    logger = make_logger(config, hparams.get('config'))
    trainer.loggers = [one for one in (logger if isinstance(logger, list) else [logger]) if one]
    settings = dict(run_config(config, dm), **tracking_record(logger))
    solver = Solver(input_type=config.input_type, word_dim=data.word_dim, cf_dim=data.cf_dim or 200,
                    n_channels=config.n_channels, channels_last=config.channels_last, config=settings,
                    **{k: getattr(config, k) for k in TRAINING_FLAGS})
    if trainer.is_global_zero:
        print(f'model: {type(solver.model).__name__}, {sum(p.numel() for p in solver.parameters()):,} parameters')
    with rendezvous_errors(trainer, config):
        trainer.fit(solver, datamodule=dm, ckpt_path=config.ckpt_path)
    checkpoint_cb.last_model_path = last_cb.best_model_path
    if trainer.is_global_zero:
        # how training ended, beside the config: the step it stopped at and whether the plateau rule stopped it
        settings.update(trained_steps=trainer.global_step, stopped_early=bool(stopper and stopper.stopped_epoch))
        atomic_write_bytes(os.path.join(config.model_save_path, 'config.json'),
                           json.dumps(settings, indent=1, default=str).encode())
        ended = f'stopped early at step {trainer.global_step} (valid MAP levelled off)' if \
            settings['stopped_early'] else f'trained {trainer.global_step} steps'
        best = 'none' if checkpoint_cb.best_model_score is None else f'{float(checkpoint_cb.best_model_score):.4f}'
        print(f'{ended}; best valid map {best} -> {checkpoint_cb.best_model_path}; '
              f'last -> {checkpoint_cb.last_model_path}')
    return checkpoint_cb


def budget_checkpoint(config):
    """For --keep_best_until_step N: a ModelCheckpoint on the valid MAP that stops updating after step N, so one run
    trained to a plateau also yields the checkpoint a run with an N-step budget would have selected."""
    if config.keep_best_until_step < 1:
        return None
    from pytorch_lightning.callbacks import ModelCheckpoint
    until = config.keep_best_until_step

    class BestUntilStep(ModelCheckpoint):
        def _should_skip_saving_checkpoint(self, trainer):
            return trainer.global_step > until or super()._should_skip_saving_checkpoint(trainer)

        @property
        def state_key(self):  # its own saved state, apart from best.ckpt's callback on the same metric
            return f'{super().state_key}[until_step={until}]'

    return BestUntilStep(dirpath=config.model_save_path, filename=f'best_until_{until}', monitor='map', mode='max',
                         save_top_k=1, enable_version_counter=False)


def plateau_stopper(config):
    """Lightning's EarlyStopping on the valid MAP for --early_stop_patience > 0, else None. Its counters are saved
    in every checkpoint, so a resumed run stops at the same validation as an uninterrupted one."""
    if not config.early_stop_patience:
        return None
    from pytorch_lightning.callbacks import EarlyStopping

    class PlateauStopper(EarlyStopping):
        def on_train_epoch_end(self, trainer, pl_module):
            # With --max_steps Lightning resumes a last.ckpt saved at an epoch's end by running that end's hooks
            # again, without validation (Lightning issue 18595): the MAP is missing and strict would fail. That
            # epoch was already checked before the save, and its counters came back with the checkpoint.
            if not trainer.fit_loop.restarted_on_epoch_end:
                super().on_train_epoch_end(trainer, pl_module)

        def load_state_dict(self, state_dict):
            # this command's --early_stop_patience wins over the checkpoint's (Lightning restores it): the training
            # does not depend on it, so a run stopped by the rule can be resumed and extended to a stricter one
            patience = self.patience
            super().load_state_dict(state_dict)
            self.patience = patience

        @property
        def state_key(self):  # EarlyStopping's own, so the counters in checkpoints written before this class resume
            return 'EarlyStopping' + repr({'monitor': self.monitor, 'mode': self.mode})

    return PlateauStopper(monitor='map', mode='max', patience=config.early_stop_patience,
                          min_delta=config.early_stop_min_delta, strict=True, verbose=False)


@exit_on_user_error
def test(config):
    """Score --model_load_path on the test split; writes per_tag.csv, scores.npy and summary.json."""
    import pytorch_lightning as pl

    from checkpoint import load_state, model_dims
    from metrics import format_summary
    from file_io import require_output_dir
    from solver import Solver
    pl.seed_everything(config.seed, workers=True)
    path = config.model_load_path
    dm, data, model_state, hparams = prepare(config, ('test',), path)
    result_path = config.result_path or os.path.join(os.path.dirname(os.path.abspath(path)), 'test')
    require_output_dir(result_path, '--result_path')  # inputs checked first: a typo makes no stray folder
    settings = dict(run_config(config, dm), checkpoint_config=hparams.get('config'))
    # record how the checkpoint was trained, not this command's training defaults
    training = {k: hparams.get(k, getattr(config, k)) for k in TRAINING_FLAGS}
    solver = Solver(input_type=config.input_type, result_path=result_path, config=settings, **training,
                    channels_last=config.channels_last, **model_dims(model_state, hparams))
    load_state(solver.model, path, model_state)
    trainer = make_trainer(config)
    summary_file = os.path.join(result_path, 'summary.json')
    if trainer.is_global_zero and os.path.isfile(summary_file):
        os.remove(summary_file)  # an earlier TEST's mark of completeness: never read back as this one's
    with rendezvous_errors(trainer, config):
        trainer.test(solver, datamodule=dm, verbose=False)
    if not trainer.is_global_zero:
        return None
    if not os.path.isfile(summary_file):
        raise UserError(f'TEST of {path} wrote no results to {result_path} (no test batch was scored); check '
                        '--limit_test_batches and the test split')
    # with ddp_spawn the evaluation ran in child processes: its record is the summary they wrote
    with open(summary_file) as f:
        summary = json.load(f)['means']
    print(format_summary(summary, f'TEST of {path} on {len(data.ids["test"][0])} songs -> {result_path}'))
    log_test_results(hparams.get('config'), result_path, summary, config.mlflow_uri)
    return solver.last_eval or {'summary': summary}


def main(config):
    take_neptune_key(config)
    return test(config) if config.mode == 'TEST' else train(config)


if __name__ == '__main__':
    from console import config_line, quiet_lightning, redact_console
    redact_console()  # before any library prints a URL it was given with its password
    parser = build_parser()
    args = parser.parse_args()
    if args.num_nodes > 1:
        # c10d logs every failed rendezvous attempt with a C++ backtrace before the Python error that
        # rendezvous_errors turns into one line; TORCH_CPP_LOG_LEVEL=WARNING shows them again
        os.environ.setdefault('TORCH_CPP_LOG_LEVEL', 'FATAL')
    take_neptune_key(args)
    quiet_lightning()
    print(config_line(args, parser))
    main(args)
    sys.exit(0)
