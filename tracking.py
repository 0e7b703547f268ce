"""Experiment tracking: the logger of a TRAIN run (MLflow, Neptune, TensorBoard or CSV), and TEST results attached
to the MLflow run that trained the checkpoint.

    python main.py --mode TRAIN ... --logger mlflow                  # into sqlite:///<project>/mlruns.db
    python main.py --mode TEST --model_load_path checkpoints/x/best.ckpt ...   # metrics + files join that run
    mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port 5000   # the dashboard

    from tracking import make_logger, tracking_record, log_test_results
"""
import argparse
import csv
import glob
import json
import math
import os
import sys
import time

from cli_args import REDACTED, public_config, redact_uri
from errors import UserError

# mlflow 3 sends usage telemetry over the network unless told not to; runs here stay on this machine
os.environ.setdefault('MLFLOW_DISABLE_TELEMETRY', 'true')

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_STORE = os.path.join(HERE, 'mlruns.db')
DEFAULT_EXPERIMENT = 'tag-retrieval'
NEPTUNE_SUNSET = ("Neptune's hosted service shut down on 5 March 2026 (its data was deleted): use --logger mlflow "
                  "for a dashboard on this machine (README: Tracking runs), --neptune_mode offline to keep "
                  "records under .neptune/, or --logger tensorboard")


def metric_name(name):
    """MLflow refuses '@' in metric names: p@10 -> p_at_10 (validation and test alike)."""
    return name.replace('@', '_at_')


def resolve_uri(uri):
    """--mlflow_uri -> an absolute tracking uri (None: the project's SQLite store), so TEST finds it from anywhere."""
    if uri is None:
        return 'sqlite:///' + DEFAULT_STORE
    if uri.startswith(('http://', 'https://', 'databricks')):
        return uri
    if uri.startswith('sqlite:///'):
        return 'sqlite:///' + os.path.abspath(uri[len('sqlite:///'):])
    if uri.startswith('file:'):
        return 'file://' + os.path.abspath(uri[len('file://'):] if uri.startswith('file://') else uri[len('file:'):])
    raise UserError(f'--mlflow_uri {uri!r} is not a tracking uri; pass sqlite:///FILE.db, file:///FOLDER or '
                    'http://HOST:PORT of an MLflow server')


def artifact_root(uri):
    """Artifacts of a SQLite store go to ./mlartifacts beside the .db file (where `mlflow ui` also puts them)."""
    if uri.startswith('sqlite:///'):
        return 'file://' + os.path.join(os.path.dirname(uri[len('sqlite:///'):]), 'mlartifacts')
    return None


def _mlflow_logger_class():
    from pytorch_lightning.loggers import MLFlowLogger

    class MLflowRunLogger(MLFlowLogger):
        """Lightning's MLFlowLogger that never records a credential, names metrics as MLflow accepts them, and
        tags the run with the best checkpoint each time one is saved (checkpoint files themselves stay local)."""

        def log_hyperparams(self, params):
            params = vars(params) if isinstance(params, argparse.Namespace) else dict(params)
            super().log_hyperparams(self._not_yet_logged(public_config(params)))

        def _not_yet_logged(self, params):
            """A resumed run (same run id) already holds its parameters and MLflow refuses to change one: keep the
            first values, and record what the resume changed (e.g. config/ckpt_path) as `resumed/KEY` tags."""
            from lightning_fabric.utilities.logger import _convert_params, _flatten_dict
            logged = self.experiment.get_run(self.run_id).data.params
            flat = _flatten_dict(_convert_params(params))
            for key, value in flat.items():
                if key in logged and logged[key] != str(value)[:250]:
                    self.experiment.set_tag(self.run_id, f'resumed/{key}', str(value)[:250])
            return {key: value for key, value in flat.items() if key not in logged}

        def log_metrics(self, metrics, step=None):
            super().log_metrics({metric_name(k): v for k, v in metrics.items()}, step)

        def after_save_checkpoint(self, checkpoint_callback):
            # only the callback that selects on valid MAP names the best checkpoint (last.ckpt has its own)
            if checkpoint_callback.best_model_path and checkpoint_callback.monitor is not None:
                score = checkpoint_callback.best_model_score
                self.experiment.set_tag(self.run_id, 'best_checkpoint',
                                        os.path.abspath(checkpoint_callback.best_model_path))
                if score is not None:
                    self.experiment.set_tag(self.run_id, 'best_valid_map', f'{float(score):.6f}')
            super().after_save_checkpoint(checkpoint_callback)

    return MLflowRunLogger


def make_mlflow_logger(config, resumed_config=None):
    """Resuming a TRAIN (--ckpt_path) of the same store continues its MLflow run instead of starting another."""
    from pytorch_lightning.utilities import rank_zero_only
    uri = resolve_uri(config.mlflow_uri)
    resumed_config = resumed_config or {}
    same_store = resumed_config.get('mlflow_tracking_uri') == redact_uri(uri)
    if rank_zero_only.rank != 0:
        # Lightning logs from rank 0 only; a logger here would still open the store, racing rank 0 creating it
        return None
    run_name = config.run_name or os.path.basename(os.path.normpath(config.model_save_path))
    logger = _mlflow_logger_class()(
        experiment_name=config.experiment_name, run_name=run_name, tracking_uri=uri,
        artifact_location=artifact_root(uri), log_model=False,
        run_id=resumed_config.get('mlflow_run_id') if same_store else None)
    try:
        logger.run_id  # create the run now, so an unreachable server stops before training
    except Exception as e:
        raise UserError(f'MLflow tracking at {redact_uri(uri)} failed: {redact_uri(_first_line(e))}; start the '
                        'server, or pass --mlflow_uri sqlite:///mlruns.db for a local store')
    return logger


def make_neptune_logger(config):
    from pytorch_lightning.loggers import NeptuneLogger
    try:
        logger = NeptuneLogger(project=None if config.neptune_project == '.' else config.neptune_project,
                               api_key=None,  # Neptune reads NEPTUNE_API_TOKEN, set by cli_args.take_neptune_key
                               mode=config.neptune_mode, log_model_checkpoints=False)
        logger.experiment  # start the run now, so a failure stops before training
    except Exception as e:
        raise UserError(f'Neptune ({config.neptune_mode} mode) failed: {_first_line(e)}. {NEPTUNE_SUNSET}; '
                        'or check --neptune_project/--neptune_api_key')
    return logger


def make_logger(config, resumed_config=None):
    """The Trainer's logger for --logger (None: neptune when a Neptune flag is given, else tensorboard)."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    kind = config.logger
    if kind is None:
        neptune_given = config.neptune_project != '.' or config.neptune_api_key != '.'
        kind = 'neptune' if neptune_given else 'tensorboard'
    if kind == 'none':
        return False
    if kind == 'tensorboard':
        return TensorBoardLogger(save_dir=config.model_save_path, name='logs')
    if kind == 'csv':
        return CSVLogger(save_dir=config.model_save_path, name='logs')
    if kind == 'mlflow':
        # the CSV copy beside the checkpoint keeps the curves readable without the store (experiments.py reads it)
        loggers = [make_mlflow_logger(config, resumed_config),
                   CSVLogger(save_dir=config.model_save_path, name='logs')]
        return [one for one in loggers if one is not None]
    return make_neptune_logger(config)


def tracking_record(logger):
    """What the run config (config.json, the checkpoint) keeps so that TEST can find the MLflow run."""
    for one in logger if isinstance(logger, list) else [logger]:
        if type(one).__name__ == 'MLflowRunLogger' and one._run_id is not None:
            # a password in the uri stays out of config.json and the checkpoints: TEST takes the real uri from
            # --mlflow_uri or MLFLOW_TRACKING_URI (real_tracking_uri)
            return {'mlflow_run_id': one._run_id, 'mlflow_tracking_uri': redact_uri(one._tracking_uri)}
    return {}


def summary_metrics(summary):
    """summary.json's means -> {test/map: .., test/p_at_10: .., test/map/category/genre: .., test/random_map: ..}."""
    metrics = {}
    for group_name, by_group in summary.items():
        if group_name == 'random_baseline':
            metrics['test/random_map'] = by_group.get('map')
        elif group_name == 'all':
            metrics.update({f'test/{m}': by_group[m] for m in ('map', 'p@10', 'roc_auc')})
        else:
            metrics.update({f'test/{m}/{group_name}/{group}': values[m]
                            for group, values in by_group.items() for m in ('map', 'p@10', 'roc_auc')})
    return {metric_name(k): float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def real_tracking_uri(stored, given=None):
    """The tracking uri a checkpoint records has its password redacted: the real one is --mlflow_uri (`given`) or
    MLFLOW_TRACKING_URI when either redacts to the stored one; else the stored uri as it is."""
    if not stored or REDACTED not in stored:
        return stored
    for candidate in (given, os.environ.get('MLFLOW_TRACKING_URI')):
        if candidate and redact_uri(resolve_uri(candidate)) == stored:
            return resolve_uri(candidate)
    print(f'warning: the MLflow store {stored} needs its password: pass --mlflow_uri with it or set '
          'MLFLOW_TRACKING_URI', file=sys.stderr)
    return None


def log_test_results(checkpoint_config, result_path, summary, given_uri=None):
    """Attach TEST's metrics, per_tag.csv, summary.json and figures to the MLflow run that trained the checkpoint.
    Returns the run id, or None when the checkpoint has no MLflow run or the store cannot be reached (the results
    stay in result_path either way)."""
    run_id = (checkpoint_config or {}).get('mlflow_run_id')
    uri = real_tracking_uri((checkpoint_config or {}).get('mlflow_tracking_uri'), given_uri)
    if not run_id or not uri:
        return None
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    timestamp = int(time.time() * 1000)
    files = [os.path.join(result_path, name) for name in ('per_tag.csv', 'summary.json')]
    files += sorted(glob.glob(os.path.join(result_path, '*.png')))
    try:
        client = MlflowClient(tracking_uri=uri)
        client.log_batch(run_id, metrics=[Metric(k, v, timestamp, 0) for k, v in summary_metrics(summary).items()])
        for path in files:
            if os.path.isfile(path):
                client.log_artifact(run_id, path, artifact_path='test')
    except Exception as e:
        print(f'warning: TEST results are in {result_path} but were not attached to MLflow run {run_id} at '
              f'{redact_uri(uri)}: {redact_uri(_first_line(e))}', file=sys.stderr)
        return None
    print(f'TEST results attached to MLflow run {run_id} ({redact_uri(uri)})')
    return run_id


def has_run(uri, run_id):
    """Whether the store at --mlflow_uri holds the run `run_id` (None: no run)."""
    if not run_id:
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    try:
        MlflowClient(tracking_uri=resolve_uri(uri)).get_run(run_id)
    except MlflowException:
        return False
    return True


def import_finished_run(folder, run_name, uri=None, experiment_name=DEFAULT_EXPERIMENT):
    """Log a run that finished without MLflow (config.json, logs/version_*/metrics.csv, test/) as an MLflow run,
    once: a run of that name already in the experiment is left as it is. Returns the run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    uri = resolve_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else \
        client.create_experiment(experiment_name, artifact_location=artifact_root(uri))
    found = client.search_runs([experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    if found:
        return found[0].info.run_id
    with open(os.path.join(folder, 'config.json')) as f:
        config = public_config(json.load(f))
    run_id = client.create_run(experiment_id, run_name=run_name, tags={'imported_from': folder}).info.run_id
    params = [Param(k, str(v)[:250]) for k, v in config.items() if not isinstance(v, dict)]
    timestamp = int(time.time() * 1000)
    curves = []
    for path in sorted(glob.glob(os.path.join(folder, 'logs', 'version_*', 'metrics.csv'))):
        with open(path) as f:
            curves += [Metric(metric_name(k), float(v), timestamp, int(row['step']))
                       for row in csv.DictReader(f) for k, v in row.items() if v and k not in ('step', 'epoch')]
    for start in range(0, max(len(params), len(curves)), 100):
        client.log_batch(run_id, params=params[start:start + 100], metrics=curves[start:start + 100])
    summary_path = os.path.join(folder, 'test', 'summary.json')
    if os.path.isfile(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)['means']
        log_test_results({'mlflow_run_id': run_id, 'mlflow_tracking_uri': uri}, os.path.dirname(summary_path),
                         summary)
    client.set_terminated(run_id)
    return run_id


def _first_line(error):
    return f'{type(error).__name__}: ' + (str(error).strip().splitlines() or [''])[0]
