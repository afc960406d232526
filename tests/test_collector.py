import gc
import threading

import pytest

from bot import collector


@pytest.fixture(autouse=True)
def restore_collector():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_a_pause_holds_off_collection_and_the_outermost_end_resumes_it() -> None:
    gc.enable()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        # The inner pause ending must not resume collection inside the outer one.
        assert not gc.isenabled()
    assert gc.isenabled()


def test_cyclic_garbage_made_during_a_pause_is_collected_after_it() -> None:
    gc.enable()
    gc.collect()

    class Node:
        other: object

    with collector.paused():
        for _ in range(1000):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        assert sum(isinstance(o, Node) for o in gc.get_objects()) == 2000
    gc.collect()
    assert not any(isinstance(o, Node) for o in gc.get_objects())


def test_a_collector_turned_off_by_the_program_stays_off() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_threads_resume_once_the_last_ends() -> None:
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def worker() -> None:
        with collector.paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=worker)
    with collector.paused():
        thread.start()
        assert inside.wait(5)
    # This thread's pause ended, the worker's has not.
    assert not gc.isenabled()
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_an_exception_in_the_block_still_resumes_collection() -> None:
    gc.enable()
    with pytest.raises(ValueError), collector.paused():
        raise ValueError("boom")
    assert gc.isenabled()
