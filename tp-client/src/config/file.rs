//! The config file: TOML, unknown keys rejected, every error located by line and
//! column. Relative paths are relative to the file's directory; `~/` is the home
//! directory.

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Layer, expand_tilde};
use crate::addr::ServerAddr;
use crate::transport::Transport;
use tp_net::duration::parse_timeout;

/// The file as written, before any value is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    server: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    peer_ca: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    transport: Option<Spanned<String>>,
    stealth: Option<bool>,
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses the text of the config file at `path` into a [`Layer`].
pub fn parse_file(text: &str, path: &Path, home: Option<&Path>) -> Result<Layer, ConfigError> {
    let located = |span: Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        ConfigError::File {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    };
    let raw: RawFile = toml::from_str(text)
        .map_err(|e| located(e.span().unwrap_or(0..0), e.message().to_owned()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let file_path = |value: Option<Spanned<String>>| {
        value.map(|v| {
            let p = expand_tilde(Path::new(v.get_ref()), home);
            if p.is_relative() { dir.join(p) } else { p }
        })
    };
    let server = match raw.server {
        None => None,
        Some(v) => Some(
            ServerAddr::parse(v.get_ref())
                .map_err(|e| located(v.span(), format!("server: {e}")))?,
        ),
    };
    let connect_timeout = match raw.connect_timeout {
        None => None,
        Some(v) => Some(
            parse_timeout(v.get_ref())
                .map_err(|e| located(v.span(), format!("connect_timeout: {e}")))?,
        ),
    };
    let transport = match raw.transport {
        None => None,
        Some(v) => Some(
            Transport::parse(v.get_ref())
                .map_err(|e| located(v.span(), format!("transport: {e}")))?,
        ),
    };
    Ok(Layer {
        server,
        server_name: raw.server_name.map(Spanned::into_inner),
        cert: file_path(raw.cert),
        key: file_path(raw.key),
        ca: file_path(raw.ca),
        peer_ca: file_path(raw.peer_ca),
        connect_timeout,
        transport,
        stealth: raw.stealth,
    })
}
