//! The DDL parser and the options -> typed config step: any UTF-8 script must parse or fail
//! with an error, never panic.
//!
//! Scripts are split and each statement parsed on its own (what `parse_script` does, minus
//! stopping at the first bad statement), so one bad statement does not hide the config
//! checks of the good `CREATE TABLE`s around it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_sql::config::{ConnectorConfig, Trigger};
use weir_sql::ddl::{Statement, parse_statement};
use weir_sql::lexer::split_statements;

fuzz_target!(|data: &[u8]| {
    // weir reads scripts as UTF-8 text.
    let Ok(script) = std::str::from_utf8(data) else { return };
    if let Ok(statements) = split_statements(script) {
        for text in &statements {
            if let Ok(Statement::CreateTable(table)) = parse_statement(text) {
                let _ = ConnectorConfig::from_table(&table);
            }
        }
    }
    // Durations (`connect_timeout`, WATERMARK delays) and `--trigger` values.
    if script.len() <= 128 {
        let _ = weir_sql::interval::parse_duration(script);
        let _ = script.parse::<Trigger>();
    }
});
