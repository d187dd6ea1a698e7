//! Test payloads: fast deterministic pseudo-random bytes, and checksums.
//!
//! SHA-256 comes from aws-lc-rs through rustls's public hash provider: its assembly
//! runs at full speed in the unoptimized test profile, where the `sha2` crate hashes
//! about 50 times slower (2 s for 64 MiB).

use rustls::crypto::hash::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A splitmix64 stream: cheap, deterministic, incompressible enough for transfers.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf` (whose length is a multiple of 8 except maybe the last word).
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Prng::new(seed).fill(&mut out);
    out
}

/// An incremental SHA-256 (aws-lc-rs).
pub struct Sha256(Box<dyn Context>);

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Sha256::new()
    }
}

impl Sha256 {
    /// A fresh hash.
    pub fn new() -> Sha256 {
        let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
        let hash = suite.tls13().expect("a TLS 1.3 suite").common.hash_provider;
        assert_eq!(
            hash.algorithm(),
            rustls::crypto::hash::HashAlgorithm::SHA256
        );
        Sha256(hash.start())
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest, hex.
    pub fn finish_hex(self) -> String {
        hex::encode(self.0.finish().as_ref())
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(bytes);
    hash.finish_hex()
}

/// Byte count and hex SHA-256 of a stream's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// How many bytes.
    pub len: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl Summary {
    /// The summary of `bytes`.
    pub fn of(bytes: &[u8]) -> Summary {
        Summary {
            len: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    /// The summary of `len` bytes of the stream seeded with `seed`.
    pub fn of_stream(seed: u64, len: u64) -> Summary {
        let mut prng = Prng::new(seed);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            prng.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Summary {
            len,
            sha256: hasher.finish_hex(),
        }
    }
}

/// Writes `len` bytes of the stream seeded with `seed` to `w` (not shut down).
pub async fn write_stream<W: AsyncWrite + Unpin>(
    w: &mut W,
    seed: u64,
    len: u64,
) -> std::io::Result<()> {
    let mut prng = Prng::new(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        prng.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    w.flush().await
}

/// Reads `r` to EOF and summarizes what came.
pub async fn read_summary<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Summary> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Summary {
        len,
        sha256: hasher.finish_hex(),
    })
}
