//! Encryption of secrets at rest (hook AWS secrets, app API secrets, legacy app secrets).
//!
//! ChaCha20-Poly1305 with a random 96-bit nonce per value; the stored blob is `nonce || ciphertext`.
//! The 32-byte server key lives outside the database (`secret.key` in the data directory, or
//! `HOOKRELAY_SECRET_KEY`), so a copy of the database file alone does not reveal the secrets.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hookrelay_core::Secret;

use crate::StoreError;

const NONCE_LEN: usize = 12;

/// Encrypts and decrypts secrets with the server key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new_from_slice(key).expect("a 32-byte key is valid"),
        }
    }

    /// A fresh random key, for a data directory's first start.
    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        key
    }

    pub fn seal(&self, secret: &Secret) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), secret.expose().as_bytes())
            .expect("encryption into a Vec cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, blob: &[u8]) -> Result<Secret, StoreError> {
        if blob.len() < NONCE_LEN {
            return Err(StoreError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| StoreError::Decrypt)?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| StoreError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| StoreError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let sealed = SecretBox::new(&[7; 32]).seal(&Secret::new("s3cr3t"));
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(
            SecretBox::new(&[7; 32]).open(&sealed).unwrap().expose(),
            "s3cr3t"
        );
        assert!(matches!(
            SecretBox::new(&[8; 32]).open(&sealed),
            Err(StoreError::Decrypt)
        ));
    }
}
