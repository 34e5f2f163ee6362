"""Parsing from many threads at once (gunicorn gthread workers do exactly this)."""
import threading

from xorest.filter import parse


def test_concurrent_first_parses():
    errors, barrier = [], threading.Barrier(16)

    def work(index):
        barrier.wait()
        try:
            for n in range(50):
                node = parse(f"power_state:running name_label:/^web{index}/ tags:p{n} CPUs:number:>={n}")
                assert node.match({"power_state": "Running", "name_label": f"web{index}", "tags": [f"p{n}"],
                                   "CPUs": {"number": n}})
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
