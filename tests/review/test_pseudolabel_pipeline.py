"""The in-process pipeline: order kept, decoding and writing overlap the model, decode errors
skip one item, a failing write stops the run with its exception and nothing after it."""

from __future__ import annotations

import threading

import pytest

from depthweb.errors import InputError
from depthweb.services.review.pseudolabel_pipeline import Pipeline


def _pipeline(log: list, *, bad=(), fail_write_at=None, infer_gate=None, **kw) -> Pipeline:
    def decode(i: int) -> int:
        if i in bad:
            raise InputError(f"item {i} is unreadable")
        log.append(("decode", i, threading.current_thread().name))
        return i * 10

    def infer(items, data):
        if infer_gate is not None:
            infer_gate(items)
        log.append(("infer", tuple(items), threading.current_thread().name))
        return list(zip(items, data, strict=True))

    def write(out):
        if fail_write_at is not None and out[0][0] >= fail_write_at:
            raise OSError("disk full")
        log.append(("write", tuple(i for i, _ in out), threading.current_thread().name))
        return out

    return Pipeline(decode=decode, infer=infer, write=write,
                    on_written=lambda out: log.append(("done", tuple(i for i, _ in out))),
                    on_error=lambda i, exc: log.append(("error", i, str(exc))), **kw)


@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_order_batches_and_decode_errors(batch_size):
    log: list = []
    _pipeline(log, bad={5}).run(list(range(10)), batch_size)
    done = [i for e in log if e[0] == "done" for i in e[1]]
    assert done == [i for i in range(10) if i != 5]
    assert [e for e in log if e[0] == "error"] == [("error", 5, "item 5 is unreadable")]
    inferred = [e[1] for e in log if e[0] == "infer"]
    assert all(len(b) <= batch_size for b in inferred)
    main = threading.current_thread().name
    assert {e[2] for e in log if e[0] == "infer"} == {main}
    assert all(e[2].startswith("pl-decode") for e in log if e[0] == "decode")
    assert all(e[2].startswith("pl-write") for e in log if e[0] == "write")


def test_next_batches_are_decoded_while_the_model_runs():
    log: list = []
    seen_ahead = []

    def gate(items):  # while batch 0 is in the model, later items get decoded
        if items[0] == 0:
            ev = threading.Event()
            for _ in range(200):
                if any(e[0] == "decode" and e[1] >= 4 for e in log):
                    seen_ahead.append(True)
                    break
                ev.wait(0.05)

    _pipeline(log, infer_gate=gate).run(list(range(12)), 4)
    assert seen_ahead == [True]


def test_a_failing_write_stops_the_run():
    log: list = []
    with pytest.raises(OSError, match="disk full"):
        _pipeline(log, fail_write_at=4).run(list(range(12)), 2)
    done = [i for e in log if e[0] == "done" for i in e[1]]
    assert done == [0, 1, 2, 3]
    assert not [e for e in log if e[0] == "write" and e[1][0] >= 4]
