//! What `auto` remembers: servers whose QUIC did not answer, so that the next
//! tunnels (in this process, and in the next `tp` processes: each ssh
//! `ProxyCommand` is one) go straight to TLS/TCP for a while instead of waiting
//! for QUIC's head start again.
//!
//! The file is small text, one line per server: `quic_failed UNIX_SECONDS
//! SERVER`. It is only a hint: a missing, unreadable, garbled or unwritable file
//! means QUIC gets tried, never that a tunnel fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::debug;

/// How long a server is taken over TLS/TCP after its QUIC did not answer.
pub const QUIC_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// At most this many servers are remembered; the oldest entries go first.
const MAX_ENTRIES: usize = 64;

const HEADER: &str =
    "# tp: servers whose QUIC did not answer (auto uses TLS/TCP for 10 minutes); safe to delete\n";
const KIND: &str = "quic_failed";

/// One server's QUIC memory, in this process and in the cache file.
#[derive(Debug)]
pub(crate) struct TransportMemory {
    file: Option<PathBuf>,
    key: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Whether the file has been read into `failed_at` yet.
    loaded: bool,
    /// When QUIC last did not answer.
    failed_at: Option<SystemTime>,
}

impl TransportMemory {
    /// Memory for the server spelled `key` (its `HOST:PORT`), shared through
    /// `file` if there is one.
    pub(crate) fn new(key: String, file: Option<PathBuf>) -> Self {
        TransportMemory {
            file,
            key,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When QUIC last did not answer, if that was less than
    /// [`QUIC_RETRY_AFTER`] before `now`.
    pub(crate) fn quic_failed_recently(&self, now: SystemTime) -> Option<SystemTime> {
        let mut state = self.state();
        if !state.loaded {
            state.loaded = true;
            state.failed_at = self.file.as_deref().and_then(|f| read(f, &self.key));
        }
        state.failed_at.filter(|&at| fresh(at, now))
    }

    /// Remembers that QUIC did not answer at `now`.
    pub(crate) fn record_quic_failure(&self, now: SystemTime) {
        let mut state = self.state();
        state.loaded = true;
        state.failed_at = Some(now);
        if let Some(file) = &self.file {
            update_file(file, &self.key, Some(now), now);
        }
    }

    /// Forgets a QUIC failure, since QUIC just worked. Touches the file only if
    /// it held one for this server.
    pub(crate) fn record_quic_success(&self, now: SystemTime) {
        let mut state = self.state();
        let had = state.failed_at.take().is_some() || !state.loaded;
        state.loaded = true;
        if let (true, Some(file)) = (had, &self.file) {
            update_file(file, &self.key, None, now);
        }
    }
}

/// Whether a failure at `at` still counts at `now`. A time in the future (the
/// clock was set back) does not.
fn fresh(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at)
        .is_ok_and(|age| age < QUIC_RETRY_AFTER)
}

/// A file's entries: server and failure time, garbage lines skipped.
fn parse(text: &str) -> Vec<(String, SystemTime)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (kind, secs, key) = (words.next()?, words.next()?, words.next()?);
            if kind != KIND || words.next().is_some() {
                return None;
            }
            let at = UNIX_EPOCH.checked_add(Duration::from_secs(secs.parse().ok()?))?;
            Some((key.to_owned(), at))
        })
        .collect()
}

/// The file's text with `key` set to `failed_at` (or removed), stale entries
/// dropped, newest first, at most [`MAX_ENTRIES`].
fn render(text: &str, key: &str, failed_at: Option<SystemTime>, now: SystemTime) -> String {
    let mut entries: Vec<(String, SystemTime)> = parse(text)
        .into_iter()
        .filter(|(k, at)| k != key && fresh(*at, now))
        .collect();
    if let Some(at) = failed_at {
        entries.push((key.to_owned(), at));
    }
    entries.sort_by_key(|&(_, at)| std::cmp::Reverse(at));
    entries.truncate(MAX_ENTRIES);
    let mut out = String::from(HEADER);
    for (key, at) in entries {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        out.push_str(&format!("{KIND} {secs} {key}\n"));
    }
    out
}

fn read(file: &Path, key: &str) -> Option<SystemTime> {
    match std::fs::read_to_string(file) {
        Ok(text) => parse(&text)
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, at)| at)
            .max(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            debug!(file = %file.display(), "cannot read the transport cache: {e}");
            None
        }
    }
}

/// Rewrites the file (through a temporary file and a rename, so a concurrent
/// reader never sees half of it). Failures are logged at debug and ignored.
fn update_file(file: &Path, key: &str, failed_at: Option<SystemTime>, now: SystemTime) {
    let old = std::fs::read_to_string(file).unwrap_or_default();
    let new = render(&old, key, failed_at, now);
    if new == old || (old.is_empty() && new == HEADER) {
        return;
    }
    let write = || -> io::Result<()> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, new.as_bytes())?;
        std::fs::rename(&tmp, file).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    };
    match write() {
        Ok(()) => debug!(file = %file.display(), "transport cache updated"),
        Err(e) => debug!(file = %file.display(), "cannot write the transport cache: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn entries_round_trip_and_expire() {
        let now = at(1_000_000);
        let text = render("", "a.example:443", Some(at(999_990)), now);
        let text = render(&text, "[2001:db8::1]:443", Some(at(999_999)), now);
        assert!(text.starts_with("# tp:"), "{text}");
        assert_eq!(
            parse(&text),
            vec![
                ("[2001:db8::1]:443".to_owned(), at(999_999)),
                ("a.example:443".to_owned(), at(999_990)),
            ]
        );
        // Ten minutes later the older entry is gone when the file is rewritten.
        let later = at(999_990 + QUIC_RETRY_AFTER.as_secs());
        let text = render(&text, "b.example:443", None, later);
        assert_eq!(
            parse(&text),
            vec![("[2001:db8::1]:443".to_owned(), at(999_999))]
        );
        // Removing an entry.
        let text = render(&text, "[2001:db8::1]:443", None, later);
        assert!(parse(&text).is_empty(), "{text}");
    }

    #[test]
    fn garbage_is_skipped_and_the_future_does_not_count() {
        let text = "junk\nquic_failed notanumber x:1\nquic_failed 5 x:1 extra\nquic_failed 7 x:1\n";
        assert_eq!(parse(text), vec![("x:1".to_owned(), at(7))]);
        assert!(fresh(at(7), at(8)));
        assert!(!fresh(at(9), at(8)), "a failure in the future is ignored");
        assert!(!fresh(at(7), at(7) + QUIC_RETRY_AFTER));
    }

    #[test]
    fn memory_is_shared_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tp").join("transport");
        let now = SystemTime::now();
        let first = TransportMemory::new("tp.example:443".into(), Some(file.clone()));
        assert_eq!(first.quic_failed_recently(now), None);
        first.record_quic_failure(now);
        assert!(first.quic_failed_recently(now).is_some());

        // Another process, another server: only this server's entry counts.
        let second = TransportMemory::new("tp.example:443".into(), Some(file.clone()));
        let other = TransportMemory::new("other.example:443".into(), Some(file.clone()));
        assert!(second.quic_failed_recently(now).is_some());
        assert_eq!(other.quic_failed_recently(now), None);

        second.record_quic_success(now);
        let third = TransportMemory::new("tp.example:443".into(), Some(file));
        assert_eq!(third.quic_failed_recently(now), None);
    }

    #[test]
    fn an_unwritable_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "x").unwrap();
        let memory = TransportMemory::new("a:1".into(), Some(blocker.join("transport")));
        let now = SystemTime::now();
        memory.record_quic_failure(now);
        // Still remembered in the process.
        assert!(memory.quic_failed_recently(now).is_some());
        memory.record_quic_success(now);
        assert_eq!(memory.quic_failed_recently(now), None);
    }
}
