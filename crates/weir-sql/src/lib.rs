//! weir's SQL surface: scripts of `CREATE TABLE ... WITH (...)` and `INSERT INTO ... SELECT`,
//! and the typed connector configurations their options become.
//!
//! This crate knows nothing of execution. It turns text into [`Statement`]s and options into
//! [`config`] structs, with errors that name the line and the option.

#![warn(missing_docs)]

pub mod config;
pub mod ddl;
pub mod error;
pub mod interval;
pub mod lexer;
pub mod options;
pub mod types;

pub use ddl::{CreateTable, Insert, Select, Statement, Watermark, parse_script, parse_statement};
pub use error::{Result, SqlError};
pub use options::{OptionReader, Options};
