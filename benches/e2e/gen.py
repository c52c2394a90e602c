#!/usr/bin/env python3
"""Writes the end-to-end benchmark's workload: deterministic newline-delimited JSON events.

    gen.py DIR [EVENTS] [FILES]      # defaults: 2,000,000 events in 20 files

Line i (0 <= i < EVENTS) goes to file i // (EVENTS / FILES), named DIR/part-NNN.json, and has
event time 2024-01-01T01:00:00Z + 5 ms * i. Every file spans 500 s of event time at the default
size, less than the 10-minute watermark delay.

- Duplicates: a line with i % 10 == 9 (and i >= 503) repeats the event_id of line i - 503, an
  ordinary event about 2.5 s earlier in event time (10% of lines).
- Late rows: from the third file on, a line with i % 200 == 101 is an event with its own id,
  "late-<i>", and an event time one hour behind its place (500 per file at the default size).
  One hour is more than the watermark delay plus the event time of two files, so such a row is
  at or below the watermark of the batch before whenever each file is its own batch: it is late
  by Spark's 3.4+ rule (and weir's) from the third batch on.
- Everything else is an ordinary event "evt-<i>" with user_id i % 100,000.

Prints a JSON summary with the expected rows out: with one file per trigger (every late row
dropped, every duplicate dropped), and with all files in one batch (the first batch drops no
late row, so late rows are kept).
"""
import json
import os
import sys


def main():
    out = sys.argv[1]
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    files = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    per_file = events // files
    assert per_file * files == events, "EVENTS must be a multiple of FILES"
    os.makedirs(out, exist_ok=True)
    base_ms = 3600 * 1000  # 01:00:00 on 2024-01-01, so late rows stay on the same day
    dups = late = plain = 0
    for f in range(files):
        lines = []
        append = lines.append
        for i in range(f * per_file, (f + 1) * per_file):
            uid = i % 100_000
            amount = (i * 7919 % 100_000) / 100.0
            if f >= 2 and i % 200 == 101:
                eid, ms = f"late-{i:012d}", base_ms + 5 * i - 3_600_000
                late += 1
            elif i % 10 == 9 and i >= 503:
                eid, ms = f"evt-{i - 503:012d}", base_ms + 5 * i
                dups += 1
            else:
                eid, ms = f"evt-{i:012d}", base_ms + 5 * i
                plain += 1
            s, milli = divmod(ms, 1000)
            append(
                f'{{"event_id":"{eid}","user_id":{uid},"amount":{amount:.2f},'
                f'"ts":"2024-01-01T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{milli:03d}Z"}}\n'
            )
        tmp = os.path.join(out, f".part-{f:03d}.json")
        with open(tmp, "w") as fh:
            fh.writelines(lines)
        os.rename(tmp, os.path.join(out, f"part-{f:03d}.json"))
    assert dups + late + plain == events
    json.dump(
        {
            "events": events,
            "files": files,
            "duplicates": dups,
            "late": late,
            "expected_rows_one_file_per_trigger": plain,
            "expected_rows_all_files_in_one_batch": plain + late,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
