"""Worker processes that never outlive their parent: killed with it (Linux: PR_SET_PDEATHSIG), stopped on SIGTERM.

    from workers import worker_pool
    with worker_pool(2) as pool: ...
"""
import contextlib
import os
import signal
import sys
import threading


def kill_me_when_parent_dies():
    """In a child (Linux): the kernel sends it SIGKILL when its parent dies, even by SIGKILL; kept across exec."""
    if sys.platform.startswith('linux'):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def die_with_parent(parent_pid):
    """Pool initializer: be killed with the parent; exit now if it died before the call took effect."""
    kill_me_when_parent_dies()
    if os.getppid() != parent_pid:
        os._exit(1)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def worker_pool(workers):
    """multiprocessing.Pool whose workers never outlive the parent: killed with it (Linux: PR_SET_PDEATHSIG),
    and terminated when the parent gets SIGTERM or Ctrl-C, or leaves the block in any way."""
    import multiprocessing
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    # spawn, not fork: the parent runs threads (tqdm's monitor, the pool's own handlers, BLAS), and a forked child
    # inherits any lock one of them held at that instant, held forever
    pool = multiprocessing.get_context('spawn').Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
