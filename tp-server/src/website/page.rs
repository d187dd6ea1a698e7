//! The page a server with no website backend answers with: `[website] page`, or
//! a small built-in one. An HTTP/1.x request gets `200` and the page; anything
//! else gets `400`, as from any web server; then the connection closes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most of a request head that is read before answering.
const MAX_HEAD: usize = 8 * 1024;

/// The built-in page.
pub(crate) const BUILT_IN: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Welcome</title></head>\n<body><h1>Welcome</h1><p>Nothing to see here yet.</p></body></html>\n";

/// Reads the request head (bounded in size and time; `early` is what was read
/// of it already), answers with `page`.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    early: Vec<u8>,
    limit: Duration,
    page: &str,
) {
    let read_head = async {
        let mut head = early;
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n")
            && head.len() < MAX_HEAD
            && !clearly_not_http(&head)
        {
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        Some(head)
    };
    let Ok(Some(head)) = tokio::time::timeout(limit, read_head).await else {
        return;
    };
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let is_http = first_line.windows(7).any(|w| w == b" HTTP/1")
        && first_line.first().is_some_and(u8::is_ascii_uppercase);
    let date = http_date(time::OffsetDateTime::now_utc());
    let response = if is_http {
        let head_only = head.starts_with(b"HEAD ");
        format!(
            "HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            page.len(),
            if head_only { "" } else { page }
        )
    } else {
        format!(
            "HTTP/1.1 400 Bad Request\r\nDate: {date}\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"
        )
    };
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// `now` as an HTTP date (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37
/// GMT`): every origin server with a clock sends one, so a page without it
/// would stand out.
fn http_date(now: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    now.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        // Formatting a valid date with a fixed description does not fail;
        // a year beyond 9999 is the only way, and then no date is better.
        .unwrap_or_default()
}

/// Whether `head` cannot start an HTTP/1.x request: a web server answers
/// `400` at once rather than waiting for the end of a head (nginx does so at
/// the first byte that cannot be part of a method, or at a request line
/// without ` HTTP/1`).
fn clearly_not_http(head: &[u8]) -> bool {
    let line = head.trim_ascii_start();
    let method_len = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match line.get(method_len) {
        None => false,
        Some(b' ') if method_len > 0 => line
            .iter()
            .position(|&b| b == b'\n')
            .is_some_and(|end| !line[..end].windows(7).any(|w| w == b" HTTP/1")),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    async fn ask(request: &[u8]) -> String {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(request).await.unwrap();
        let serving = tokio::spawn(async move {
            serve(&mut server, Vec::new(), Duration::from_secs(5), BUILT_IN).await;
        });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        serving.await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn any_request_gets_the_page_and_head_only_the_head() {
        let answer = ask(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{answer}");
        assert!(answer.contains(&format!("Content-Length: {}\r\n", BUILT_IN.len())));
        assert!(answer.ends_with(BUILT_IN), "{answer}");
        let answer = ask(b"HEAD /x HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_gets_nothing_within_the_limit() {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = tokio::time::Instant::now();
        serve(&mut server, Vec::new(), Duration::from_secs(3), BUILT_IN).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn what_is_not_http_gets_a_400() {
        for junk in [
            &b"FOO\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\r\n\r\n",
            b"get / http/1.1\r\n\r\n",
        ] {
            let answer = ask(junk).await;
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{answer}"
            );
        }
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let date = time::macros::datetime!(1994-11-06 08:49:37 UTC);
        assert_eq!(http_date(date), "Sun, 06 Nov 1994 08:49:37 GMT");
        let date = time::macros::datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(http_date(date), "Fri, 02 Jan 2026 01:04:05 GMT");
    }

    #[tokio::test]
    async fn what_cannot_be_http_gets_its_400_without_waiting_for_a_blank_line() {
        for junk in [&b"{\"v\":1}\n"[..], b"GET /\n", b"\x16\x03\x01"] {
            let (mut client, mut server) = duplex(64 * 1024);
            client.write_all(junk).await.unwrap();
            // The client stays open and silent: only the bytes decide.
            let serving = serve(&mut server, Vec::new(), Duration::from_secs(60), BUILT_IN);
            tokio::time::timeout(Duration::from_secs(5), serving)
                .await
                .unwrap_or_else(|_| panic!("waited on {junk:?}"));
            drop(server);
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            let answer = String::from_utf8(answer).unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{answer}"
            );
        }
        for incomplete in [
            &b"GE"[..],
            b"GET / HTTP/1.1\r\n",
            b"\r\nPOST /x HTTP/1.0\r\nA: b\r\n",
        ] {
            assert!(!clearly_not_http(incomplete), "{incomplete:?}");
        }
    }

    #[tokio::test]
    async fn an_oversized_head_is_answered_once_the_bound_is_reached() {
        let mut request = b"GET / HTTP/1.1\r\nX: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let answer = ask(&request).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}
