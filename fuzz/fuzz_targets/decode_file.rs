//! The file source's JSON and CSV decoding (`weir_connectors::file::decode::decode_rows`):
//! any file must decode into batches of the declared schema or fail with an error, never
//! panic. When bad lines are collected (dead-letter), every data line must end up either
//! as a row or as a bad line.
//!
//! Input: one control byte, then the file's bytes. Control bits:
//! - bit 0: 0 JSON, 1 CSV
//! - bit 1: CSV header line (0: yes, the default; 1: no)
//! - bits 2-3: CSV delimiter `,` `;` `\t` `|`
//! - bit 4: JSON schema: 0 nested (arrays, structs, maps, binary), 1 flat. CSV always uses
//!   the flat schema, since arrow-csv has no nested types.
//! - bit 5: collect bad lines (`on_bad_row = 'dead_letter'`) instead of failing on the first
//! - bit 6: `ts` is the event-time column (a WATERMARK): a row without it is bad
//! - bit 7: `max_row_bytes = 64`

#![no_main]

use std::sync::LazyLock;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_connectors::file::decode::decode_rows;
use weir_fuzz::{FLAT_COLUMNS, NESTED_COLUMNS, declared_schema};
use weir_sql::config::{BadRows, FileConfig, FileFormat};

static NESTED: LazyLock<SchemaRef> =
    LazyLock::new(|| declared_schema(NESTED_COLUMNS, "connector = 'file', path = 'in', format = 'json'"));
static FLAT: LazyLock<SchemaRef> =
    LazyLock::new(|| declared_schema(FLAT_COLUMNS, "connector = 'file', path = 'in', format = 'csv'"));

fuzz_target!(|data: &[u8]| {
    let Some((&control, file)) = data.split_first() else { return };
    let format = if control & 1 == 0 { FileFormat::Json } else { FileFormat::Csv };
    let schema = if format == FileFormat::Json && control & 0x10 == 0 { &*NESTED } else { &*FLAT };
    let collect_bad = control & 0x20 != 0;
    let config = FileConfig {
        path: "in".into(),
        format,
        max_files_per_trigger: None,
        header: control & 2 == 0,
        delimiter: [b',', b';', b'\t', b'|'][usize::from((control >> 2) & 3)],
        late_rows: Default::default(),
        bad_rows: if collect_bad { BadRows::DeadLetter("dlq".into()) } else { BadRows::Fail },
        max_row_bytes: (control & 0x80 != 0).then_some(64),
        event_time: (control & 0x40 != 0).then(|| "ts".to_string()),
    };
    let Ok(decoded) = decode_rows(&config, schema, "fuzz", Bytes::copy_from_slice(file), collect_bad) else { return };
    // What a query plans against: every batch has exactly the declared schema.
    for batch in &decoded.batches {
        assert_eq!(&batch.schema(), schema, "decoded batch schema differs from the declared one");
    }
    assert!(collect_bad || decoded.bad.is_empty(), "bad lines returned without collecting them");
    if !decoded.bad.is_empty() {
        // Lines were decoded one by one: each non-blank data line is one row or one bad line.
        let rows: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
        let mut lines = file.split(|b| *b == b'\n');
        if format == FileFormat::Csv && config.header {
            lines.next();
        }
        let data_lines = lines.filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
        assert_eq!(rows + decoded.bad.len(), data_lines, "{rows} rows + {} bad lines", decoded.bad.len());
        assert!(decoded.bad.windows(2).all(|w| w[0].line < w[1].line), "bad lines out of order or repeated");
    }
});
