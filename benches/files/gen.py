"""Writes one big input file for benches/files/run.

    gen.py csv OUT_FILE BYTES            # CSV with a header, about BYTES bytes
    gen.py parquet OUT_FILE ROWS GROUP   # Parquet, ROWS rows in row groups of GROUP rows (needs pyarrow)

Rows are `event_id, user_id, amount, ts, note`. Every 1,000th CSV note is quoted and holds a
comma, a doubled quote and a line end, so that record ends are not line ends everywhere.
Prints the number of rows written.
"""

import sys

BASE_US = 1_700_000_000_000_000


def csv(path, size):
    rows = 0
    written = 0
    with open(path, "w", newline="") as f:
        f.write("event_id,user_id,amount,ts,note\n")
        while written < size:
            lines = []
            for i in range(rows, rows + 10_000):
                note = f'"multi, ""line""\nnote {i}"' if i % 1000 == 0 else f"note {i % 97}"
                lines.append(f"evt-{i:012d},{i % 50_000},{i % 1000 * 1.25},2023-11-14T22:{i // 100 // 60 % 60:02d}:{i // 100 % 60:02d}Z,{note}\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
            rows += 10_000
    return rows


def parquet(path, rows, group):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("event_id", pa.string()),
        ("user_id", pa.int64()),
        ("amount", pa.float64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("note", pa.string()),
    ])
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, group):
            ids = pa.array(range(start, min(start + group, rows)), pa.int64())
            table = pa.table({
                "event_id": pc.binary_join_element_wise("evt-", pc.utf8_lpad(pc.cast(ids, pa.string()), 12, "0"), ""),
                "user_id": pc.remainder(ids, 50_000),
                "amount": pc.multiply(pc.cast(pc.remainder(ids, 1000), pa.float64()), 1.25),
                "ts": pc.cast(pc.add(pc.multiply(ids, 10_000), BASE_US), pa.timestamp("us", tz="UTC")),
                "note": pc.binary_join_element_wise("note ", pc.cast(pc.remainder(ids, 97), pa.string()), ""),
            }, schema=schema)
            w.write_table(table, row_group_size=group)
    return rows


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    if kind == "csv":
        print(csv(out, int(sys.argv[3])))
    else:
        print(parquet(out, int(sys.argv[3]), int(sys.argv[4])))
