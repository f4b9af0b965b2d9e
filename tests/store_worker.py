"""A separate process for the two-process store tests: `send N RATE` or `receive N`."""

from __future__ import annotations

import sys
import time

from shared.store import Arrival, Store


def main() -> int:
    path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(path)
    app_id = store.app_id()
    if mode == "send":
        rate = float(sys.argv[4])
        start = time.monotonic()
        for i in range(count):
            target = start + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            seqno = store.record_send(app_id, "ds", "1", time.time())
            store.record_post(app_id, "ds", seqno, True, None, time.time())
        print(f"sent {count} in {time.monotonic() - start:.2f}s", flush=True)
    else:
        done, seqno = 0, 1
        deadline = time.monotonic() + 60
        while done < count and time.monotonic() < deadline:
            result = store.classify_arrival(app_id, "ds", seqno, time.time())
            if result.kind is Arrival.UNKNOWN:
                time.sleep(0.0005)
                continue
            assert result.kind is Arrival.RECEIVED, result
            done += 1
            seqno += 1
        print(f"received {done}", flush=True)
        return 0 if done == count else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
