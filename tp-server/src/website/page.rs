//! The built-in page, for a server with no website backend: a plain HTTP/1.1
//! answer to whatever request arrives, then the connection closes.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most of a request head that is read before answering.
const MAX_HEAD: usize = 8 * 1024;

const BODY: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Welcome</title></head>\n<body><h1>Welcome</h1><p>Nothing to see here yet.</p></body></html>\n";

/// Reads the request head (bounded in size and time; `early` is what was read
/// of it already), answers with the page.
pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut S,
    early: Vec<u8>,
    limit: Duration,
) {
    let read_head = async {
        let mut head = early;
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
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
    let head_only = head.starts_with(b"HEAD ");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        BODY.len(),
        if head_only { "" } else { BODY }
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    async fn ask(request: &[u8]) -> String {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(request).await.unwrap();
        let serving = tokio::spawn(async move {
            serve(&mut server, Vec::new(), Duration::from_secs(5)).await;
        });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        serving.await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn any_request_gets_the_page_and_head_only_the_head() {
        let answer = ask(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        assert!(answer.ends_with(BODY), "{answer}");
        let answer = ask(b"HEAD /x HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_ends_gets_nothing_within_the_limit() {
        let (mut client, mut server) = duplex(64 * 1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = tokio::time::Instant::now();
        serve(&mut server, Vec::new(), Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        drop(server);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn an_oversized_head_is_answered_once_the_bound_is_reached() {
        let mut request = b"GET / HTTP/1.1\r\nX: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let answer = ask(&request).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}
