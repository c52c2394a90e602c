"""Groups a flat `perf report` (self time per symbol) into the buckets of issue 21 and prints
them as a Markdown table, with the largest symbols of each.

    perf report -i perf.data --no-children --sort dso,sym --stdio -g none --percent-limit 0 | perf_buckets.py
    perf report -i perf.data --no-children --sort pid --stdio -g none | perf_buckets.py --threads

A symbol goes to the first bucket whose pattern matches "dso [k or .] symbol". The patterns
name crates and functions, so a bucket is what that code costs itself, not what it calls:
libc's memmove, malloc and the kernel's page faults are their own buckets whoever called them.
"""
import re
import sys

BUCKETS = [
    ("timestamp parsing (arrow-cast's parser, chrono, a chrono-tz lookup per value)",
     r"arrow_cast::parse|chrono|TimestampParser|string_to_datetime|timestamp_array"),
    ("JSON decode (arrow-json tape, numbers, strings, splitting lines)",
     r"arrow_json|weir_connectors::file::decode|lexical|memchr|simd_json|sonic_rs"),
    ("dedup: key, hash, state (weir_state, hashbrown, hashers, arrow row format)",
     r"weir_state|hashbrown|foldhash|ahash|xxhash|arrow_row|RowConverter"),
    ("Parquet encode: dictionary, encoders, snappy",
     r"parquet::|snap::|\bsnap\b"),
    ("libc memmove / memcpy / memset / memcmp",
     r"\[\.\] __mem|\[\.\] mem(cpy|move|set|cmp)\b"),
    ("kernel: zeroing fresh pages (clear_page*)", r"\[k\] clear_page"),
    ("kernel: copying file data (copy_*_iter, copy_user*, copy_folio*)", r"\[k\] (_?copy_|copy_folio|rep_movs)"),
    ("kernel: other (page faults, memory accounting, locks, scheduler, syscalls)", r"\[k\]"),
    ("allocator (malloc, free, realloc)", r"malloc|_int_free|\bfree\b|realloc|cfree|mi_|je_|tcache"),
    ("arrow compute (filter, take, concat, casts)", r"arrow_select|arrow_array|arrow_buffer|arrow_data|arrow_cast|arrow_ord"),
]
OTHER = "other (Delta, DataFusion, tokio, the rest)"

if sys.argv[1:] == ["--threads"]:
    # With --threads: self time per thread, the busy ones by name and the rest together.
    rows = [re.match(r"^\s*([\d.]+)%\s+(\d+):(.*?)\s*$", l) for l in sys.stdin]
    rows = [(float(m[1]), f"{m[3]} {m[2]}") for m in rows if m]
    busy = [r for r in rows if r[0] >= 5.0]
    rest = [r for r in rows if r[0] < 5.0]
    parts = [f"{name} {pct:.1f}%" for pct, name in busy]
    if rest:
        parts.append(f"{len(rest)} other threads {sum(p for p, _ in rest):.1f}% (at most {max(p for p, _ in rest):.1f}% each)")
    print("Self time by thread: " + "; ".join(parts))
    sys.exit(0)

line_re = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$")
totals, symbols = {}, {}
for line in sys.stdin:
    m = line_re.match(line)
    if not m:
        continue
    pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
    key = f"{dso} [{kind}] {sym}"
    bucket = next((name for name, pattern in BUCKETS if re.search(pattern, key)), OTHER)
    totals[bucket] = totals.get(bucket, 0.0) + pct
    symbols.setdefault(bucket, {})
    # A generic function appears once per instantiation: add them up under one name.
    symbols[bucket][sym] = symbols[bucket].get(sym, 0.0) + pct
if not totals:
    sys.exit("perf_buckets.py: no samples in the input (is it `perf report --stdio` output?)")

print("| where | self time | largest symbols |")
print("|---|---|---|")
for name in [n for n, _ in BUCKETS] + [OTHER]:
    if name not in totals:
        continue
    top = sorted(symbols[name].items(), key=lambda kv: -kv[1])[:4]
    shown = "; ".join(f"`{s[:70]}` {p:.1f}%" for s, p in top)
    print(f"| {name} | {totals[name]:.1f}% | {shown} |")
print(f"\nSelf time as a share of all samples of the process (every thread, user and kernel); the buckets add up to {sum(totals.values()):.1f}%.")
