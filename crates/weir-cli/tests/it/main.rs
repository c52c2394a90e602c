//! weir's integration tests, in one binary so linking stays cheap: the SQL conformance
//! suite, end-to-end runs of the `weir` binary read back by an independent Delta reader,
//! and crash recovery at every step of the batch loop.

mod cli;
mod conformance;
mod crash;
mod support;
