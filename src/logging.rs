//! Log output: structured `tracing` events to stderr, as text or JSON lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::LogFormat;

pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter '{filter}': {e}"))?;
    let shown = filter.and(filter_fn(|metadata| !is_dispatcher_error(metadata)));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour());
    let output = match format {
        LogFormat::Text => output.with_filter(shown).boxed(),
        LogFormat::Json => output.json().flatten_event(true).with_filter(shown).boxed(),
    };
    let counter = ProtocolErrorCounter.with_filter(filter_fn(is_dispatcher_error));
    tracing_subscriber::registry()
        .with(output)
        .with(counter)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Colour codes only for a person at a terminal: a file, journald or `kubectl logs` gets plain text. `NO_COLOR`
/// (no-color.org) turns them off there too.
fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// actix-http's HTTP/1 dispatcher logs each connection it ends on a malformed request or an I/O error at ERROR
/// ("stream error: ..."), one line per connection: a fuzzer or a port scanner floods the log. Those are counted
/// instead, and `report_protocol_errors` logs the count once a minute. Each one stays visible with
/// `--log actix_http=trace` (the dispatcher's own trace line).
fn is_dispatcher_error(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::ERROR && metadata.target() == "actix_http::h1::dispatcher"
}

static PROTOCOL_ERRORS: AtomicU64 = AtomicU64::new(0);

struct ProtocolErrorCounter;

impl<S: tracing::Subscriber> Layer<S> for ProtocolErrorCounter {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        PROTOCOL_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs, at most once per `period`, how many connections ended on protocol errors since the last report.
pub async fn report_protocol_errors(period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let connections = PROTOCOL_ERRORS.swap(0, Ordering::Relaxed);
        if connections > 0 {
            tracing::warn!(
                connections,
                period = %humantime::format_duration(period),
                "connections ended on malformed requests or I/O errors (see them with --log actix_http=trace)"
            );
        }
    }
}
