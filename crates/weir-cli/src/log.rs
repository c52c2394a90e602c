//! `weir run`'s log: `tracing` events on stderr, as human lines or JSON lines.
//!
//! - `human` (the default): `weir: <message>`, `weir: warning: <message>`,
//!   `error: <message>`; debug and trace events add their fields. What a person reads.
//! - `json`: one object per line, `{"timestamp", "level", "target", "message", <fields>}`,
//!   for a log system. Lines about a query carry `query` and `query_id`, lines about a batch
//!   `batch_id` too.
//!
//! Levels: `--log-level` or `RUST_LOG` (`info`, `debug`, or per target
//! `warn,weir_connectors=debug`); by default weir's own info and every crate's warnings.
//! Messages never hold a setting's value, so no secret reaches the log.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `weir: <message>` lines for people.
    Human,
    /// JSON lines with every field, for log systems.
    Json,
}

/// weir's crates.
const WEIR_CRATES: [&str; 7] = ["weir", "weir_cli", "weir_runtime", "weir_connectors", "weir_planner", "weir_state", "weir_checkpoint"];

/// Libraries left out unless asked for by name: delta-rs's kernel reports as errors what
/// weir expects and handles (a table not created yet), and weir says what went wrong itself.
const QUIET: &str = "buoyant_kernel=off,buoyant_kernel_engine=off";

/// The directives for a bare level: weir's crates at `level`, the libraries at warnings (or
/// at `level` too when it says more).
fn for_level(level: &str) -> String {
    let others = if matches!(level, "debug" | "trace") { level } else { "warn" };
    let weir: Vec<String> = WEIR_CRATES.iter().map(|c| format!("{c}={level}")).collect();
    format!("{others},{QUIET},{}", weir.join(","))
}

/// Installs the process's log. `level` (`--log-level`) wins over `RUST_LOG`.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    let asked = level.map(str::to_string).or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()));
    let bad = |e: &dyn std::fmt::Display| format!("log level '{}': {e}; write e.g. info, debug or warn,weir_connectors=debug", asked.as_deref().unwrap_or_default());
    let directives = match &asked {
        Some(d) if !d.contains('=') && !d.contains(',') => {
            let l = d.trim().to_ascii_lowercase();
            l.parse::<tracing_subscriber::filter::LevelFilter>().map_err(|e| bad(&e))?;
            for_level(&l)
        }
        Some(d) => d.clone(),
        None => for_level("info"),
    };
    let filter: Targets = directives.parse().map_err(|e| bad(&e))?;
    // The filter is global (a layer of its own), not a per-layer filter: a per-layer
    // filter's state is cleared only when the event it judged is dispatched, and a `log`
    // record it turned down (delta-rs's debug lines) left it set, so that the next event on
    // that thread, a batch's line, was dropped.
    tracing_subscriber::registry().with(filter).with(Lines { format }).try_init().map_err(|e| e.to_string())
}

/// Writes each event as a line on stderr.
struct Lines {
    format: LogFormat,
}

/// An event's message and other fields.
#[derive(Default)]
struct Fields {
    message: String,
    others: Map<String, Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            name => {
                self.others.insert(name.to_string(), Value::from(value));
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            name => {
                self.others.insert(name.to_string(), Value::from(format!("{value:?}")));
            }
        }
    }
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let line = match self.format {
            LogFormat::Human => {
                // Another crate's event names it, and shows its fields.
                let target = event.metadata().target();
                let ours = WEIR_CRATES.iter().any(|c| target == *c || target.starts_with(&format!("{c}::")));
                let message = if ours { fields.message.clone() } else { format!("[{target}] {}", fields.message) };
                let mut line = match level {
                    Level::ERROR => format!("error: {message}"),
                    Level::WARN => format!("weir: warning: {message}"),
                    Level::INFO => format!("weir: {message}"),
                    _ => format!("weir: {}: {message}", level.as_str().to_ascii_lowercase()),
                };
                if level > Level::INFO || !ours {
                    for (k, v) in &fields.others {
                        let _ = write!(line, " {k}={v}");
                    }
                }
                line
            }
            LogFormat::Json => {
                let mut object = Map::new();
                object.insert("timestamp".into(), Value::from(weir_runtime::progress::iso_millis(weir_runtime::progress::now_millis())));
                object.insert("level".into(), Value::from(level.as_str()));
                object.insert("target".into(), Value::from(event.metadata().target()));
                object.insert("message".into(), Value::from(fields.message));
                object.extend(fields.others);
                Value::Object(object).to_string()
            }
        };
        crate::bar::write_line(&line);
    }
}
