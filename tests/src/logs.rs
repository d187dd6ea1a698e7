//! Log capture: one global tracing subscriber for the whole test process, writing
//! plain formatted lines (no ANSI) into a shared buffer.
//!
//! Every server log line carries the server's listening address (the `conn` span's
//! `listen=` field, or a `listen=` field of its own), so a test reads only its own
//! server's lines with [`lines_for`], whether tests run one per process (nextest) or
//! as threads of one process (`cargo test`).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Every captured line, in order.
static LINES: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();

/// Installs the global subscriber once; later calls do nothing.
pub fn init() {
    buffer();
}

fn buffer() -> &'static Arc<Mutex<Vec<String>>> {
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = BufferWriter {
            lines: lines.clone(),
        };
        // tp-server at debug shows why connections end; everything else at info.
        let filter = EnvFilter::new("info,tp_server=debug,tp::audit=info");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(true)
            .with_writer(writer)
            .finish();
        // Another subscriber can only be there if a test installed one itself.
        let _ = tracing::subscriber::set_global_default(subscriber);
        lines
    })
}

/// The captured lines that belong to the server listening on `listen`.
pub fn lines_for(listen: SocketAddr) -> Vec<String> {
    let needle = format!("listen={listen}");
    let lines = buffer().lock().unwrap_or_else(|e| e.into_inner());
    lines
        .iter()
        .filter(|line| contains_field(line, &needle))
        .cloned()
        .collect()
}

/// `needle` occurs in `line` and is not the prefix of a longer port number.
fn contains_field(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(i, m)| {
        !line[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[derive(Clone)]
struct BufferWriter {
    lines: Arc<Mutex<Vec<String>>>,
}

/// One event: the formatter writes it in pieces, the line is stored on drop.
struct LineWriter {
    lines: Arc<Mutex<Vec<String>>>,
    pending: Vec<u8>,
}

impl io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.pending);
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(text.lines().map(str::to_owned));
    }
}

impl<'a> MakeWriter<'a> for BufferWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            lines: self.lines.clone(),
            pending: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_prefix_does_not_match() {
        assert!(contains_field(
            "x listen=127.0.0.1:4376 y",
            "listen=127.0.0.1:4376"
        ));
        assert!(contains_field(
            "conn{listen=127.0.0.1:4376}",
            "listen=127.0.0.1:4376"
        ));
        assert!(!contains_field(
            "listen=127.0.0.1:43761",
            "listen=127.0.0.1:4376"
        ));
    }
}
