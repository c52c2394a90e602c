#!/usr/bin/env python3
"""Writes the window benchmark's workload: deterministic newline-delimited JSON events, and
what each engine must write from them.

    gen.py DIR [EVENTS] [FILES] [FILES_PER_TRIGGER...]   # defaults: 2,000,000 events, 20 files, 1 20

Event i (0 <= i < EVENTS) goes to file i // (EVENTS / FILES), DIR/part-NNN.json, in that
order (the files' modification times follow their names, which is the order Spark's file
source takes them in). Its place in event time is 2024-01-01T01:00:00Z + 6 ms * i: each file
spans 600 s (10 one-minute windows) at the default size, 3 h 20 min in all.

- Users: USERS (4,000) ids "user-NNNN", drawn from a seeded generator with a skew (user k with
  probability about proportional to 1/sqrt(k)): the busiest user has about 160 events a
  minute, the quietest about one; about 3,300 users a minute.
- Out of order: one event in ten has its event time moved back by 1 to 45 s, less than the
  1-minute watermark delay, so it is never late.
- Late-placed rows: from the third file on, LATE_PER_FILE (50) events a file, one every
  12 s, have an event time 20 minutes behind their place. With one file per batch, 40 of
  each 50 are late and 10 are not (see below): 720 late in all at the default size.

Prints a JSON summary with, for every FILES_PER_TRIGGER setting, what an append-mode
`count(*) GROUP BY 1-minute window, user_id` with a 1-minute watermark must write, batch by
batch, by Spark's rules (3.4 on; weir's are the same):
- batch N's watermark is the largest event time of batches 0..N-1 minus 1 minute (none for
  batch 0); it closes (writes and drops) every window whose end is at or below it;
- a (row, window) pair of batch N is late when the window's end is at or below batch N-1's
  watermark (the "watermark for late events"), which trails batch N-2's last event by a
  minute: with one 10-minute file per batch, a row placed 20 minutes back is late unless its
  window ends above that watermark, as for the last 2 of the 10 minutes its file's late rows
  span;
- `numRowsDroppedByWatermark` counts a batch's late groups, not rows.
With trigger availableNow a last batch without data closes what the final watermark
closes, and the last windows stay open: the summary says how many groups that leaves
unwritten.
"""
import json
import os
import random
import sys

USERS = 4000
LATE_PER_FILE = 50
STEP_MS = 6
MINUTE_MS = 60_000
BASE_MS = 3600 * 1000  # 01:00:00 on 2024-01-01
DELAY_MS = MINUTE_MS  # WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE
# The encoded key of a group as weir's state encodes keys (a null flag, then 8 bytes for a
# timestamp; a null flag, a 4-byte length and the bytes for a string), and the count's state.
KEY_BYTES = (1 + 8) + (1 + 8) + (1 + 4 + len("user-0000"))
COUNT_STATE_BYTES = 8


def ts_text(ms):
    s, milli = divmod(ms, 1000)
    assert s < 24 * 3600, "the workload must stay within 2024-01-01"
    return f"2024-01-01T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{milli:03d}Z"


def main():
    out = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    settings = [int(s) for s in sys.argv[4:]] or [1, 20]
    per_file = events // files
    assert per_file * files == events, "EVENTS must be a multiple of FILES"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(18)
    # Per file: (user index, event time ms) of every event, for the expected output below.
    per_file_events = []
    shifted = late = 0
    for f in range(files):
        lines, rows = [], []
        late_every = per_file // LATE_PER_FILE
        for i in range(f * per_file, (f + 1) * per_file):
            user = min(int(USERS * rng.random() ** 2), USERS - 1)
            ms = BASE_MS + STEP_MS * i
            if f >= 2 and (i - f * per_file) % late_every == late_every // 2:
                ms -= 20 * MINUTE_MS
                late += 1
            elif rng.random() < 0.1:
                ms -= rng.randint(1000, 45_000)
                shifted += 1
            value = rng.randint(0, 99_999) / 100
            lines.append(f'{{"user_id":"user-{user:04d}","ts":"{ts_text(ms)}","value":{value:.2f}}}\n')
            rows.append((user, ms))
        per_file_events.append(rows)
        tmp = os.path.join(out, f".part-{f:03d}.json")
        with open(tmp, "w") as fh:
            fh.writelines(lines)
        os.rename(tmp, os.path.join(out, f"part-{f:03d}.json"))
    summary = {
        "events": events,
        "files": files,
        "users": USERS,
        "out_of_order": shifted,
        "late_placed": late,
        "key_bytes": KEY_BYTES,
        "partial_aggregate_bytes_per_group": KEY_BYTES + COUNT_STATE_BYTES,
        "settings": {str(n): expected(per_file_events, n) for n in settings},
    }
    json.dump(summary, sys.stdout)
    print()


def expected(per_file_events, per_trigger):
    """What Spark's append mode writes with `per_trigger` files a batch (see the module docs)."""
    counts = {}
    late_rows = late_groups = 0
    max_ts = None
    # The watermarks of batch N-1 and batch N (None: no watermark yet, nothing is late).
    late_watermark = watermark = None
    for b in range(0, len(per_file_events), per_trigger):
        batch_late = set()
        for rows in per_file_events[b:b + per_trigger]:
            for user, ms in rows:
                start = ms - ms % MINUTE_MS
                max_ts = ms if max_ts is None else max(max_ts, ms)
                if late_watermark is not None and start + MINUTE_MS <= late_watermark:
                    batch_late.add((start, user))
                    late_rows += 1
                    continue
                counts[(start, user)] = counts.get((start, user), 0) + 1
        late_groups += len(batch_late)
        late_watermark, watermark = watermark, max_ts - DELAY_MS
    written = {k: n for k, n in counts.items() if k[0] + MINUTE_MS <= watermark}
    return {
        "batches_with_data": -(-len(per_file_events) // per_trigger),
        "rows_out": len(written),
        "events_in_rows_out": sum(written.values()),
        "late_rows": late_rows,
        "late_groups": late_groups,
        "groups_left_open": len(counts) - len(written),
        "final_watermark": ts_text(watermark),
    }


if __name__ == "__main__":
    main()
