"""Child processes that must not outlive the build: a `kill -9` of make_demo_data.py leaves no worker behind.

Render workers ask the kernel for SIGKILL when their parent dies (Linux PR_SET_PDEATHSIG). Preprocessing
steps run in process groups of their own (their own worker pools included), watched by a guardian process
that kills those groups as soon as the build process is gone, however it ended.
"""
import contextlib
import os
import signal
import subprocess
import sys

from errors import UserError
from workers import kill_me_when_parent_dies

class Guardian:
    """A watcher process, in a session of its own, that reads 'start PGID' / 'end PGID' lines from the
    build; when the build's end of the pipe closes (it exited or was killed), it kills every group still
    running."""

    def __init__(self):
        read_end, self._write_end = os.pipe()
        if os.fork() == 0:  # the guardian; os._exit: none of the build's Python cleanup runs twice
            os.close(self._write_end)
            os.setsid()  # out of the build's process group: a kill of that group spares the guardian
            devnull = os.open(os.devnull, os.O_RDWR)
            for stream in (0, 1, 2):  # release the build's terminal or pipes: a reader waits on no one
                os.dup2(devnull, stream)
            os._exit(self._watch(read_end))
        os.close(read_end)

    @staticmethod
    def _watch(read_end):
        groups = set()
        with os.fdopen(read_end) as messages:
            for line in messages:
                action, group = line.split()
                (groups.add if action == 'start' else groups.discard)(int(group))
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        return 0

    def _tell(self, action, group):
        os.write(self._write_end, f'{action} {group}\n'.encode())

    def run(self, command):
        """Run `command` in a new process group that the guardian kills if the build dies; returns its exit code."""
        # the step itself also dies with the build: nothing escapes before the guardian hears of it
        process = subprocess.Popen(command, start_new_session=True, preexec_fn=kill_me_when_parent_dies)
        self._tell('start', process.pid)
        try:
            return process.wait()
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): stop the step and its workers now
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self._tell('end', process.pid)


def run_step(guardian, root, script, *args):
    """One preprocessing step, as a user runs it (same interpreter, the caller's working directory)."""
    command = [sys.executable, '-u', os.path.join(root, script), *map(str, args)]
    print('$ ' + ' '.join(command), flush=True)
    returncode = guardian.run(command)
    if returncode != 0:
        raise UserError(f'{script} failed (exit {returncode}); fix the cause shown above and rerun this command')
