#!/usr/bin/env python3
"""Makes the UUID-id variant of a benches/engines data set (benches/README.md, "UUID ids"):
each event_id replaced by a UUID made from it (uuid5, so a duplicate keeps its original's id;
`late-` kept in front of the late ids, which check.py tells apart), and each file's lines
shuffled (seeded, so every run of this script makes the same files).

    uuid_ids.py FROM_DATA TO_DATA        # e.g. /tmp/weir-engines-data/2000000x20 /tmp/weir-engines-data/uuid2m
    ENGINES_DATA=TO_DATA benches/engines/run
"""
import json
import os
import random
import shutil
import sys
import uuid

src, dst = sys.argv[1:3]
os.makedirs(f"{dst}/in", exist_ok=True)
for name in sorted(os.listdir(f"{src}/in")):
    lines = []
    with open(f"{src}/in/{name}") as fh:
        for line in fh:
            row = json.loads(line)
            old = row["event_id"]
            late = old.startswith("late-")
            new = str(uuid.uuid5(uuid.NAMESPACE_URL, old))
            row["event_id"] = f"late-{new}" if late else new
            # The generator's layout, keys in order; amounts keep their two decimals.
            lines.append(line.replace(f'"event_id":"{old}"', f'"event_id":"{row["event_id"]}"'))
    random.Random(name).shuffle(lines)
    with open(f"{dst}/in/{name}", "w") as out:
        out.writelines(lines)
shutil.copy(f"{src}/expected.json", f"{dst}/expected.json")
