//! The server key and app credentials.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use hookrelay_core::Secret;
use hookrelay_store::SecretBox;

/// The key that encrypts secrets at rest: `HOOKRELAY_SECRET_KEY` (64 hex digits) if set, else
/// `secret.key` in the data directory, created (mode 0600) on first start.
pub fn server_key(data_dir: &Path, from_env: Option<&Secret>) -> anyhow::Result<SecretBox> {
    if let Some(hex_key) = from_env {
        return parse_key(hex_key.expose().trim()).context("HOOKRELAY_SECRET_KEY");
    }
    let path = data_dir.join("secret.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_key(text.trim()).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            hookrelay_store::create_private_dir(data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            let key = SecretBox::generate_key();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            writeln!(file, "{}", hex::encode(key))?;
            file.sync_all()?;
            Ok(SecretBox::new(&key))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The server key when several nodes share one database: `HOOKRELAY_SECRET_KEY` or an existing
/// `secret.key`, never a new one (a node with a key of its own could not read the others'
/// secrets).
pub fn shared_server_key(data_dir: &Path, from_env: Option<&Secret>) -> anyhow::Result<SecretBox> {
    if from_env.is_none() && !data_dir.join("secret.key").exists() {
        bail!(
            "store = \"postgres\": set HOOKRELAY_SECRET_KEY to the same 64 hex digits on every node (e.g. from `openssl rand -hex 32`), or put that key in {}",
            data_dir.join("secret.key").display()
        );
    }
    server_key(data_dir, from_env)
}

fn parse_key(hex_key: &str) -> anyhow::Result<SecretBox> {
    let bytes = hex::decode(hex_key).context("the server key must be 64 hex digits")?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("the server key must be 64 hex digits (32 bytes)");
    };
    Ok(SecretBox::new(&key))
}

/// A random string of `len` characters from `alphabet`.
fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

/// An API key like Stream's: 12 lowercase letters and digits.
pub fn new_api_key() -> String {
    random_string(12, b"abcdefghijklmnopqrstuvwxyz0123456789")
}

/// An API secret: 64 letters and digits (~380 bits).
pub fn new_api_secret() -> String {
    random_string(
        64,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    )
}
