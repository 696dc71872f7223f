//! AWS clients for hooks, and what an AWS error means for delivery.
//!
//! Clients are built from one base configuration loaded the standard way (so `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL_SNS`, profiles and the default
//! credential chain all apply), then specialised per hook: region, and credentials by auth type.
//! They are cached per (service, region, credentials) because building one costs TLS and
//! credential setup; a hook whose auth changes gets a new entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use hookrelay_core::AwsAuth;
use tokio::sync::Mutex;

use crate::outcome::CallError;

/// Settings for every AWS client.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Overrides the endpoint of every AWS service (after `AWS_ENDPOINT_URL*`), e.g. a local
    /// emulator for tests and demos.
    pub endpoint_url: Option<String>,
    /// Limit on one SDK call, connection included.
    pub call_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            call_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum AuthKey {
    Keys(String, String),
    Resource,
    Role(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    region: String,
    auth: AuthKey,
}

/// The credentials and region a hook's clients use, resolved once.
#[derive(Clone)]
struct Resolved {
    region: Region,
    credentials: Option<SharedCredentialsProvider>,
}

/// Builds and caches SQS and SNS clients.
pub struct AwsClients {
    base: SdkConfig,
    sqs: Mutex<HashMap<CacheKey, aws_sdk_sqs::Client>>,
    sns: Mutex<HashMap<CacheKey, aws_sdk_sns::Client>>,
    resolved: Mutex<HashMap<CacheKey, Resolved>>,
}

impl AwsClients {
    pub async fn new(settings: &AwsSettings) -> Arc<Self> {
        // rustls with ring: one TLS stack for the whole binary (see the workspace Cargo.toml).
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // Each hook names its region; the base only needs one from the environment. The
            // default region chain would also ask EC2 instance metadata, a network call at start.
            .region(
                aws_config::meta::region::RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(Region::new("us-east-1")),
            )
            // hookrelay retries with its own schedule and keeps every failure visible, so the
            // SDK makes one attempt per call.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(settings.call_timeout)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Arc::new(Self {
            base: loader.load().await,
            sqs: Mutex::default(),
            sns: Mutex::default(),
            resolved: Mutex::default(),
        })
    }

    async fn resolve(&self, region: &str, auth: &AwsAuth) -> (CacheKey, Resolved) {
        let key = CacheKey {
            region: region.to_owned(),
            auth: match auth {
                AwsAuth::Keys { key, secret } => {
                    AuthKey::Keys(key.clone(), secret.expose().to_owned())
                }
                AwsAuth::Resource => AuthKey::Resource,
                AwsAuth::Role { role_arn } => AuthKey::Role(role_arn.to_string()),
            },
        };
        let mut cache = self.resolved.lock().await;
        if let Some(r) = cache.get(&key) {
            return (key, r.clone());
        }
        let region = Region::new(region.to_owned());
        let credentials = match auth {
            AwsAuth::Keys { key, secret } => {
                Some(SharedCredentialsProvider::new(Credentials::new(
                    key.clone(),
                    secret.expose().to_owned(),
                    None,
                    None,
                    "hookrelay-hook-keys",
                )))
            }
            // The server's own identity: the base config's default chain.
            AwsAuth::Resource => None,
            // The server's identity assumes the role; the provider caches and refreshes.
            AwsAuth::Role { role_arn } => Some(SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(role_arn.as_str())
                    .session_name("hookrelay")
                    .region(region.clone())
                    .configure(&self.base)
                    .build()
                    .await,
            )),
        };
        let resolved = Resolved {
            region,
            credentials,
        };
        cache.insert(key.clone(), resolved.clone());
        (key, resolved)
    }

    pub async fn sqs(&self, region: &str, auth: &AwsAuth) -> aws_sdk_sqs::Client {
        let (key, r) = self.resolve(region, auth).await;
        let mut cache = self.sqs.lock().await;
        cache
            .entry(key)
            .or_insert_with(|| {
                let mut b = aws_sdk_sqs::config::Builder::from(&self.base).region(r.region);
                if let Some(c) = r.credentials {
                    b = b.credentials_provider(c);
                }
                aws_sdk_sqs::Client::from_conf(b.build())
            })
            .clone()
    }

    pub async fn sns(&self, region: &str, auth: &AwsAuth) -> aws_sdk_sns::Client {
        let (key, r) = self.resolve(region, auth).await;
        let mut cache = self.sns.lock().await;
        cache
            .entry(key)
            .or_insert_with(|| {
                let mut b = aws_sdk_sns::config::Builder::from(&self.base).region(r.region);
                if let Some(c) = r.credentials {
                    b = b.credentials_provider(c);
                }
                aws_sdk_sns::Client::from_conf(b.build())
            })
            .clone()
    }
}

/// Describes a failed SDK call: its code (the service's, or the SDK error kind's: `timeout`,
/// `connection`, `dispatch`, `request`, `HTTP <status>`), message and status. What it means for
/// delivery is `outcome::classify_call_error`'s decision.
pub fn call_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> CallError {
    let (code, message, http_status) = match err {
        SdkError::TimeoutError(_) => ("timeout".to_owned(), "the call timed out".to_owned(), None),
        SdkError::DispatchFailure(f) => {
            let kind = if f.is_timeout() {
                "timeout"
            } else if f.is_io() {
                "connection"
            } else {
                "dispatch"
            };
            (kind.to_owned(), detail(err), None)
        }
        SdkError::ConstructionFailure(_) => ("request".to_owned(), detail(err), None),
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            (format!("HTTP {status}"), detail(err), Some(status))
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let (code, message) = match s.err().code() {
                Some(code) => (
                    code.to_owned(),
                    s.err().message().unwrap_or_default().to_owned(),
                ),
                None => unparsed_error(s.raw())
                    .unwrap_or_else(|| (format!("HTTP {status}"), detail(err))),
            };
            (code, message, Some(status))
        }
        _ => ("unknown".to_owned(), detail(err), None),
    };
    CallError {
        http_status,
        ..CallError::new(code, message)
    }
}

/// The error and its causes, one line: "dispatch failure: io error: … Connection refused".
fn detail<E: std::error::Error + 'static, R: std::fmt::Debug>(err: &SdkError<E, R>) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Reads `<Code>` and `<Message>` from an XML error body the SDK could not parse. AWS itself
/// answers in each service's protocol, but emulators (moto) send EC2-style XML for auth errors,
/// which the Rust SDK reports without a code; the text is needed so users see *why* a call failed.
fn unparsed_error(raw: &aws_sdk_sqs::config::http::HttpResponse) -> Option<(String, String)> {
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    let tag = |name: &str| {
        let start = body.find(&format!("<{name}>"))? + name.len() + 2;
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].trim().to_owned())
    };
    Some((tag("Code")?, tag("Message").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::config::http::HttpResponse;
    use aws_sdk_sqs::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
    use aws_smithy_types::body::SdkBody;

    use super::*;
    use crate::outcome::{Outcome, classify_call_error};

    type Error = SdkError<SendMessageBatchError, HttpResponse>;

    fn raw(status: u16, body: &str) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_owned()))
    }

    fn service(status: u16, code: &str) -> Error {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        SdkError::service_error(SendMessageBatchError::generic(meta), raw(status, ""))
    }

    /// Every kind of SDK error, through `call_error` and then the classifier.
    #[test]
    fn every_sdk_error_kind_is_described_and_classified() {
        let io = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cases: Vec<(Error, &str, Option<u16>, &str)> = vec![
            (SdkError::timeout_error(io()), "timeout", None, "down"),
            (
                SdkError::dispatch_failure(ConnectorError::timeout(Box::new(io()))),
                "timeout",
                None,
                "down",
            ),
            (
                SdkError::dispatch_failure(ConnectorError::io(Box::new(io()))),
                "connection",
                None,
                "down",
            ),
            (
                SdkError::dispatch_failure(ConnectorError::other(Box::new(io()), None)),
                "dispatch",
                None,
                "down",
            ),
            (
                SdkError::construction_failure(io()),
                "request",
                None,
                "down",
            ),
            (
                SdkError::response_error(io(), raw(502, "bad gateway")),
                "HTTP 502",
                Some(502),
                "down",
            ),
            (
                service(403, "AccessDenied"),
                "AccessDenied",
                Some(403),
                "down",
            ),
            (
                service(400, "AWS.SimpleQueueService.NonExistentQueue"),
                "AWS.SimpleQueueService.NonExistentQueue",
                Some(400),
                "down",
            ),
            (
                service(400, "AWS.SimpleQueueService.BatchRequestTooLong"),
                "AWS.SimpleQueueService.BatchRequestTooLong",
                Some(400),
                "down",
            ),
            (
                service(400, "InvalidParameterValue"),
                "InvalidParameterValue",
                Some(400),
                "refuse",
            ),
            (
                service(500, "InternalError"),
                "InternalError",
                Some(500),
                "down",
            ),
        ];
        for (error, code, status, expected) in cases {
            let described = call_error(&error);
            assert_eq!(
                (described.code.as_str(), described.http_status),
                (code, status)
            );
            let kind = match classify_call_error(described) {
                Outcome::Refuse { .. } => "refuse",
                Outcome::DestinationDown(_) => "down",
                other => panic!("{other:?}"),
            };
            assert_eq!(kind, expected, "{code}");
        }
    }

    /// Emulators answer auth errors in XML the SDK does not parse: the code is read anyway.
    #[test]
    fn unparsed_xml_errors_keep_their_code() {
        let body = "<ErrorResponse><Error><Code>InvalidClientTokenId</Code>\
                    <Message>The security token is invalid.</Message></Error></ErrorResponse>";
        let error: Error = SdkError::service_error(
            SendMessageBatchError::generic(ErrorMetadata::builder().build()),
            raw(403, body),
        );
        let described = call_error(&error);
        assert_eq!(described.code, "InvalidClientTokenId");
        assert_eq!(described.message, "The security token is invalid.");
    }
}
