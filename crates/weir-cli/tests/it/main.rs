//! weir's integration tests, in one binary so linking stays cheap: the SQL conformance
//! suite, end-to-end runs of the `weir` binary read back by an independent Delta reader,
//! crash recovery at every step of the batch loop, seeded random SIGKILLs of deduplicating
//! runs (chaos), and the Kafka source against a real broker, including one killed and
//! started again mid-run.

mod bad_input;
mod chaos;
mod cli;
mod conformance;
mod crash;
mod file_source;
mod kafka;
mod kafka_restart;
mod support;
