"""Write the frame-major copy of the spectrograms, DATA_PATH/spec_frames/ (spec_layout.py), that the loader reads
crops from once it exists: one contiguous read a crop instead of 128 strided pieces (bench.py --only supply).

    python spec_frames.py run DATA_PATH

Resumable (copies that exist and are not older than their spectrogram are kept); run it again after step 0
recomputes spectrograms. It doubles the disk the spectrograms take; delete spec_frames/ to go back to spec/ alone.
"""
import os
import sys

from errors import UserError, exit_on_user_error
from steps import make_cli
from spec_layout import FRAMES_DIR, write_frames


@exit_on_user_error
def main(argv=None):
    parser, run_parser = make_cli(__doc__)
    run_parser.add_argument('data_path', help='the folder holding spec/')
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_path, 'spec')):
        raise UserError(f'{os.path.join(args.data_path, "spec")} is not a folder; pass the DATA_PATH that step 0 '
                        'wrote spectrograms into')
    written, current = write_frames(args.data_path)
    print(f'{os.path.join(args.data_path, FRAMES_DIR)}: {written} written, {current} already up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
