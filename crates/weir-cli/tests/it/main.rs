//! weir's integration tests, in one binary so linking stays cheap: the SQL conformance
//! suite, end-to-end runs of the `weir` binary read back by an independent Delta reader,
//! crash recovery at every step of the batch loop, seeded random SIGKILLs of deduplicating
//! and windowed runs (chaos), deterministic deduplication and windows whatever the threads,
//! pieces and crashes, and
//! the Kafka source against a real broker, including one killed and started again mid-run,
//! joins of a stream with static Delta and Parquet tables, Delta tables read as streams, and the
//! upkeep of the tables pipelines write (compaction, vacuum, schema evolution, table properties).

mod bad_input;
mod chaos;
mod cli;
mod conformance;
mod crash;
mod delta_source;
mod delta_upkeep;
mod determinism;
mod file_source;
mod kafka;
mod kafka_restart;
mod metrics;
mod object_store;
mod pipeline;
mod session_api;
mod shell;
mod static_join;
mod support;
