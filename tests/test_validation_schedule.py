"""--check_val_every_n_epoch: where validating a large split every epoch would dominate training, validate every N
epochs (best.ckpt chosen among those validations); the default stays the original's every epoch."""
import csv

import main as cli


def validated_epochs(data, out, *extra):
    cli.main(cli.build_parser().parse_args([str(a) for a in (
        '--data_path', data, '--model_save_path', out, '--n_epochs', 3, '--logger', 'csv', '--n_channels', 8,
        '--batch_size', 16, '--epoch_size', 32, '--num_chunk', 2, '--accelerator', 'cpu', *extra)]))
    with open(out / 'logs' / 'version_0' / 'metrics.csv') as f:
        return [int(row['epoch']) for row in csv.DictReader(f) if row['map']]


def test_validation_every_n_epochs(dataset, tmp_path):
    assert validated_epochs(dataset['root'], tmp_path / 'every') == [0, 1, 2]
    assert validated_epochs(dataset['root'], tmp_path / 'second', '--check_val_every_n_epoch', 2) == [1]
    assert (tmp_path / 'second' / 'best.ckpt').exists() and (tmp_path / 'second' / 'last.ckpt').exists()
