//! Credentials for signing, fetched from their provider once and reused until shortly before
//! they expire. Static keys never expire; temporary ones (an assumed role, instance or
//! container credentials) are renewed `RENEW_BEFORE` ahead, so no call signs with credentials
//! about to lapse.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::Mutex;

use super::errors::error_chain;
use crate::outcome::CallError;

/// How long before their expiry credentials are renewed.
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// How long credentials without an expiry are kept before the chain is asked again (a profile
/// file may change).
const KEEP_WITHOUT_EXPIRY: Duration = Duration::from_secs(15 * 60);

pub struct CachedCredentials {
    provider: Option<SharedCredentialsProvider>,
    /// Why there is no provider.
    unavailable: &'static str,
    /// The credentials, and when to renew them. Held while they are fetched, so concurrent
    /// calls wait for one fetch instead of starting their own.
    current: Mutex<Option<(Credentials, SystemTime)>>,
}

impl CachedCredentials {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider: Some(provider),
            unavailable: "",
            current: Mutex::default(),
        }
    }

    pub fn unavailable(why: &'static str) -> Self {
        Self {
            provider: None,
            unavailable: why,
            current: Mutex::default(),
        }
    }

    pub async fn get(&self) -> Result<Credentials, CallError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some((credentials, renew_at)) = current.as_ref()
            && now < *renew_at
        {
            return Ok(credentials.clone());
        }
        let Some(provider) = &self.provider else {
            return Err(CallError::new("credentials", self.unavailable));
        };
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| CallError::new("credentials", error_chain(&e)))?;
        let renew_at = renew_at(credentials.expiry(), now);
        *current = Some((credentials.clone(), renew_at));
        Ok(credentials)
    }
}

/// When credentials fetched at `now` should be fetched again.
fn renew_at(expiry: Option<SystemTime>, now: SystemTime) -> SystemTime {
    match expiry {
        Some(expiry) => expiry.checked_sub(RENEW_BEFORE).unwrap_or(now).max(now),
        None => now + KEEP_WITHOUT_EXPIRY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_credentials_are_renewed_ahead_of_their_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert_eq!(renew_at(Some(now + hour), now), now + hour - RENEW_BEFORE);
        assert_eq!(
            renew_at(Some(now + Duration::from_secs(60)), now),
            now,
            "expiring within the margin: fetched again at the next call"
        );
        assert_eq!(renew_at(None, now), now + KEEP_WITHOUT_EXPIRY);
    }

    #[tokio::test]
    async fn static_keys_are_fetched_once_and_missing_ones_are_explained() {
        let keys = Credentials::new("AKID", "secret", None, None, "test");
        let cached = CachedCredentials::new(SharedCredentialsProvider::new(keys));
        assert_eq!(cached.get().await.unwrap().access_key_id(), "AKID");
        assert_eq!(cached.get().await.unwrap().secret_access_key(), "secret");
        let none = CachedCredentials::unavailable("no credentials here");
        let error = none.get().await.unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.message.as_str()),
            ("credentials", "no credentials here")
        );
    }
}
