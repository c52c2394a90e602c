#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (kept in git).

The ddl seeds are the statements of sql/examples and sql/conformance/*.test plus a few
hand-written ones covering every connector's options; the decode seeds are the batch data
of the conformance tests plus lines using the fuzz schemas' columns (see src/lib.rs).
Run from anywhere: python3 fuzz/make_seeds.py
"""
import hashlib
import pathlib
import re

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def blocks(test_text):
    """(header, body lines) of each block of a .test file."""
    out, header, body = [], None, []
    for line in test_text.splitlines() + [""]:
        if header is None:
            if re.match(r"^(statement|query|batch)\b", line):
                header, body = line, []
        elif line.strip() == "":
            out.append((header, body))
            header = None
        else:
            body.append(line)
    return out


# --- ddl -----------------------------------------------------------------------------------
write("ddl", (ROOT / "sql/examples/quickstart.sql").read_text())
for test in sorted((ROOT / "sql/conformance").glob("*.test")):
    script = []
    for header, body in blocks(test.read_text()):
        if header.startswith(("statement", "query")):
            sql = "\n".join(body).split("\n----")[0].replace("$DIR", "/tmp/w")
            write("ddl", sql)
            script.append(sql)
    if script:
        write("ddl", ";\n".join(script) + ";\n")

HAND_WRITTEN = [
    """CREATE TABLE k (id BIGINT, name STRING, ts TIMESTAMP, part INT METADATA FROM 'partition',
  "offset" BIGINT METADATA VIRTUAL, k STRING METADATA FROM 'key', hs ARRAY<STRUCT<key STRING, value BINARY>> METADATA FROM 'headers',
  WATERMARK FOR ts AS ts - INTERVAL '1 hour 30 minutes')
WITH (connector = 'kafka', bootstrap_servers = 'b1:9092,b2:9092', topic = 'a, b', format = 'csv', delimiter = '\\t',
  startingOffsets = '{"a":{"0":23,"1":-2},"b":{"3":-1}}', max_offsets_per_trigger = 1_000, fail_on_data_loss = false,
  group_id = 'g', connect_timeout = '500ms', on_bad_row = 'dead_letter', dead_letter_path = 'dlq',
  'properties.security.protocol' = 'SSL', properties.fetch.wait.max.ms = 50, late_rows = 'dead_letter', late_rows_path = 'late')""",
    "CREATE TABLE r WITH (connector = 'kafka', bootstrap_servers = 'b', topic = 'r', format = 'raw', starting_offsets = 'earliest')",
    "CREATE TABLE r (key BINARY, value BINARY, p INT METADATA FROM 'partition') WITH (connector = 'kafka', bootstrap_servers = 'b', topic = 'r', format = 'raw')",
    """CREATE TABLE g (id BIGINT NOT NULL, v DOUBLE, s VARCHAR, t TIMESTAMP, d DATE, dec DECIMAL(10, 2))
WITH (connector = 'datagen', rows_per_second = 100, total_rows = 10000, max_rows_per_trigger = 500, seed = 42,
  start_time = '2024-05-01T12:00:00+02:00', 'fields.id.kind' = 'sequence', 'fields.id.min' = -5, 'fields.v.max' = 1e3,
  'fields.s.length' = 8, 'fields.s.cardinality' = 3, 'fields.s.null_rate' = 0.25, 'fields.t.max' = 60)""",
    "CREATE TABLE f (a TINYINT, b SMALLINT, c INT, d BIGINT, e FLOAT, f DOUBLE, g BOOLEAN, h TIMESTAMP_NTZ, i TIMESTAMP WITHOUT TIME ZONE, j MAP<STRING, ARRAY<INT>>, k STRUCT<x INT, y STRUCT<z STRING>>, l NUMERIC(38,0), m TEXT, n BYTEA, o LONG) WITH (connector = 'file', path = 'file:///in', format = 'csv', header = false, delimiter = ';', maxFilesPerTrigger = 2)",
    "CREATE TABLE o WITH (connector = 'delta', path = 's3://bucket/t', partition_by = 'day, hour', target_file_size = 1048576); CREATE TABLE c WITH (connector = 'console', max_rows = 5)",
    "/* comment ; */ CREATE TABLE \"Quoted\" (`weird col` STRING) WITH ('connector' = 'file', \"path\" = 'x''y', format = parquet) -- trailing",
    "INSERT INTO out WITH x AS (SELECT 1) SELECT * FROM x; INSERT INTO out (SELECT a FROM b)",
    "CREATE TABLE w (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'file', path = 'p', format = 'json', connect_timeout = '1 hour 30 minutes')",
    "10s", "500 ms", "1 hour 30 minutes", "available-now", "once", "2.5d 3h",
]
for sql in HAND_WRITTEN:
    write("ddl", sql)

# --- decode_file: control byte, then the file -------------------------------------------
JSON_NESTED, JSON_FLAT, CSV_HEADER, CSV_NO_HEADER, CSV_SEMICOLON = 0x00, 0x10, 0x01, 0x03, 0x05
for test in sorted((ROOT / "sql/conformance").glob("*.test")):
    text = test.read_text()
    csv = "format = 'csv'" in text
    for header, body in blocks(text):
        if header.startswith("batch"):
            data = "\n".join(body).split("\n----")[0].split("----")[0] + "\n"
            write("decode_file", bytes([CSV_HEADER if csv else JSON_NESTED]) + data.encode())

NESTED_LINES = [
    '{"i": 1, "n": -2, "sm": 300, "ti": 7, "f": 1.5e300, "r": 0.25, "s": "héllo \\"q\\" \\u00e9", "b": true, '
    '"ts": "2024-01-01T00:00:00.123456Z", "ntz": "2024-01-01 10:00:00", "d": "2024-02-29", "dec": "12.34", '
    '"big": 12345678901234567890.123456789, "bin": "aGk=", "tags": ["a", null, "c"], "nums": [1, 2, 3], '
    '"st": {"a": 5, "b": "x", "c": [1.0, 2.5]}, "m": {"k1": 1, "k2": null}, "req": "r"}',
    '{"i": null, "ts": 1704067200000000, "d": 19723, "dec": 1.5, "tags": [], "st": null, "m": {}, "req": ""}',
    '{"req": "x", "extra": {"deep": [1, {"a": [true, false, null]}]}}',
    '{"i": "12", "f": "NaN", "b": "true", "ts": "2024-01-01T00:00:00+05:30", "req": "y"}',
]
write("decode_file", bytes([JSON_NESTED]) + ("\n".join(NESTED_LINES) + "\n").encode())
write("decode_file", bytes([JSON_NESTED]) + (NESTED_LINES[0] + "\n{\"i\": 2, \"req\": \"z\"\n").encode())
write("decode_file", bytes([JSON_FLAT]) + ('{"i": 9223372036854775807, "big": -99999999999999999999999999999.999999999, "req": 1}\n').encode())

CSV_ROWS = [
    "i,n,sm,ti,f,r,s,b,ts,ntz,d,dec,big,req",
    '1,2,3,4,1.5,2.5,"a ""quoted"", field",true,2024-01-01T00:00:00Z,2024-01-01 10:00:00,2024-02-29,12.34,1.000000001,7',
    ",,,,,,,,,,,,,8",
    "-9223372036854775808,2147483647,-32768,127,inf,-0.0,x,false,1704067200,2024-01-01T00:00:00.123456,1970-01-01,-0.01,99999999999999999999999999999.999999999,9",
]
write("decode_file", bytes([CSV_HEADER]) + ("\n".join(CSV_ROWS) + "\n").encode())
write("decode_file", bytes([CSV_HEADER]) + ("req,s,i\n1,a,2\r\n3,\"multi\nline\",4\n").encode())
write("decode_file", bytes([CSV_NO_HEADER]) + ("\n".join(CSV_ROWS[1:]) + "\n").encode())
write("decode_file", bytes([CSV_SEMICOLON]) + ("\n".join(r.replace(",", ";") for r in CSV_ROWS) + "\n").encode())

# --- decode_kafka: control byte, then values separated by 0xFF (0xFE alone: NULL) ----------
SEP, NULL = b"\xff", b"\xfe"
JSON_NESTED_META, JSON_FLAT_META, CSV_META = 0x04, 0x06, 0x05
write("decode_kafka", bytes([JSON_NESTED]) + SEP.join(l.encode() for l in NESTED_LINES))
write("decode_kafka", bytes([JSON_NESTED_META]) + SEP.join([NESTED_LINES[0].encode(), NULL, b"", b"  \n", b'{"i": 1}{"i": 2}', b'{"i": 3', NESTED_LINES[1].encode()]))
write("decode_kafka", bytes([JSON_FLAT_META]) + SEP.join([b'{"i": 1, "req": 2}', b'{"i": "x"}', b'{\n"req": 3\n}\n']))
write("decode_kafka", bytes([0x01]) + SEP.join(r.encode() for r in CSV_ROWS[1:]))
write("decode_kafka", bytes([CSV_META]) + SEP.join([CSV_ROWS[1].encode() + b"\n", NULL, b"", b'1,"a\nb",3', b"1,2\n3,4", CSV_ROWS[2].encode() + b"\r\n"]))
