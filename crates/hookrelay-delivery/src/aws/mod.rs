//! AWS for hooks: SQS and SNS calls signed with SigV4 and sent on one pooled HTTP client.
//!
//! Delivery makes the same two calls (`SendMessageBatch`, `PublishBatch`) over and over, so they
//! are built here, straight into their wire format, rather than through the AWS SDK's per-call
//! pipeline (request types, endpoint rules, interceptors, identity cache, retry layer), which
//! cost more CPU than the rest of delivery together. What users configure stays the standard
//! AWS configuration, loaded by `aws-config`: `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_SQS` / `_SNS`, profiles, and the default credential chain; signing is the
//! `aws-sigv4` crate the SDK itself uses.
//!
//! * [`AwsClients`]: the base configuration, the HTTP client, and credentials per hook auth
//!   (cached: `credentials`).
//! * [`AwsClient`]: one service in one region with one identity; `call` signs and sends a
//!   request and turns any failure into a [`CallError`] (`errors`).

mod credentials;
mod errors;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls;
use aws_types::region::Region;
use aws_types::service_config::ServiceConfigKey;
use bytes::Bytes;
use hookrelay_core::AwsAuth;
use http::Request;
use http::Uri;
use http::header::USER_AGENT;
use http_body_util::{BodyExt, Full};
use tokio::sync::Mutex;

use crate::http_client::{HOOKRELAY, PooledClient, no_answer_within};
use crate::outcome::CallError;
use credentials::CachedCredentials;
use errors::error_chain;
pub use errors::{error_from_answer, transport_error};

/// Settings for every AWS client.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// Overrides the endpoint of every AWS service (before `AWS_ENDPOINT_URL*`, as in the
    /// SDK's own precedence), e.g. a local emulator for tests and demos.
    pub endpoint_url: Option<String>,
    /// Limit on one call, connection included.
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

/// An AWS service hooks deliver to, with how it is named and spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Action>`).
    Sqs,
    /// The query protocol (form body, XML answer).
    Sns,
}

impl Service {
    /// The SigV4 signing name, also the endpoint's host prefix.
    fn signing_name(self) -> &'static str {
        match self {
            Self::Sqs => "sqs",
            Self::Sns => "sns",
        }
    }

    /// The service id of `AWS_ENDPOINT_URL_<ID>` and of a profile's `services` section.
    fn config_id(self) -> &'static str {
        match self {
            Self::Sqs => "SQS",
            Self::Sns => "SNS",
        }
    }

    /// The public endpoint in a region (China's regions have their own domain).
    fn default_endpoint(self, region: &str) -> String {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://{}.{region}.{domain}", self.signing_name())
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum CredentialsKey {
    Keys(String, String),
    Resource,
    Role { arn: String, region: String },
}

/// Builds AWS clients for hooks: one HTTP connection pool, credentials cached per hook auth.
pub struct AwsClients {
    base: SdkConfig,
    http: PooledClient,
    /// Limit on one call, answer included.
    call_timeout: Duration,
    credentials: Mutex<HashMap<CredentialsKey, Arc<CachedCredentials>>>,
}

impl AwsClients {
    /// Fails only when the system has no usable CA certificates.
    pub async fn new(settings: &AwsSettings) -> std::io::Result<Arc<Self>> {
        // The credential chain's own calls (STS, instance metadata) go through the SDK's client:
        // rustls with ring, one TLS stack for the whole binary (see the workspace Cargo.toml).
        let sdk_http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(sdk_http)
            // Each hook names its region; the base only needs one from the environment. The
            // default region chain would also ask EC2 instance metadata, a network call at start.
            .region(
                aws_config::meta::region::RegionProviderChain::first_try(
                    aws_config::environment::EnvironmentVariableRegionProvider::new(),
                )
                .or_else(Region::new("us-east-1")),
            )
            // The credential chain's own calls (STS, instance metadata) make one attempt each:
            // a failure shows on the hook and is tried again with its next call.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(settings.call_timeout)
                    .connect_timeout(Duration::from_secs(3))
                    .build(),
            );
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        // AWS endpoints are not subject to the webhooks' deny-list.
        let http = PooledClient::new(Arc::default(), Duration::from_secs(3))?;
        Ok(Arc::new(Self {
            base: loader.load().await,
            http,
            call_timeout: settings.call_timeout,
            credentials: Mutex::default(),
        }))
    }

    /// A client for `service` in `region` with the hook's `auth`.
    pub async fn client(&self, service: Service, region: &str, auth: &AwsAuth) -> AwsClient {
        AwsClient {
            http: self.http.clone(),
            call_timeout: self.call_timeout,
            endpoint: Endpoint::new(&self.endpoint(service, region)),
            service,
            region: region.into(),
            credentials: self.credentials(region, auth).await,
        }
    }

    /// Where a service's calls go, with the SDK's precedence: an endpoint set in the server's
    /// config, then `AWS_ENDPOINT_URL_<SERVICE>` (or the profile's), then `AWS_ENDPOINT_URL`,
    /// then the public endpoint of the region.
    fn endpoint(&self, service: Service, region: &str) -> String {
        let configured = if self.base.get_origin("endpoint_url").is_client_config() {
            self.base.endpoint_url().map(str::to_owned)
        } else {
            let key = ServiceConfigKey::builder()
                .service_id(service.config_id())
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .expect("every field is set");
            self.base
                .service_config()
                .and_then(|c| c.load_config(key))
                .or_else(|| self.base.endpoint_url().map(str::to_owned))
        };
        configured.unwrap_or_else(|| service.default_endpoint(region))
    }

    async fn credentials(&self, region: &str, auth: &AwsAuth) -> Arc<CachedCredentials> {
        let key = match auth {
            AwsAuth::Keys { key, secret } => {
                CredentialsKey::Keys(key.clone(), secret.expose().to_owned())
            }
            AwsAuth::Resource => CredentialsKey::Resource,
            AwsAuth::Role { role_arn } => CredentialsKey::Role {
                arn: role_arn.to_string(),
                region: region.to_owned(),
            },
        };
        let mut cache = self.credentials.lock().await;
        if let Some(found) = cache.get(&key) {
            return found.clone();
        }
        let provider = match auth {
            AwsAuth::Keys { key, secret } => SharedCredentialsProvider::new(Credentials::new(
                key.clone(),
                secret.expose().to_owned(),
                None,
                None,
                "hookrelay-hook-keys",
            )),
            // The server's own identity: the default chain (environment, profile, web identity,
            // container, instance metadata).
            AwsAuth::Resource => match self.base.credentials_provider() {
                Some(chain) => chain,
                None => {
                    let missing = CachedCredentials::unavailable(
                        "no AWS credentials: the server's environment provides none",
                    );
                    return Arc::new(missing);
                }
            },
            // The server's identity assumes the role.
            AwsAuth::Role { role_arn } => SharedCredentialsProvider::new(
                aws_config::sts::AssumeRoleProvider::builder(role_arn.as_str())
                    .session_name("hookrelay")
                    .region(Region::new(region.to_owned()))
                    .configure(&self.base)
                    .build()
                    .await,
            ),
        };
        let cached = Arc::new(CachedCredentials::new(provider));
        cache.insert(key, cached.clone());
        cached
    }
}

/// Where an [`AwsClient`]'s calls go: the text signed, and the URI parsed once. When the text is
/// not a URI, each call fails with the parser's account of why.
#[derive(Clone)]
struct Endpoint {
    text: Arc<str>,
    uri: Result<Uri, String>,
}

impl Endpoint {
    fn new(text: &str) -> Self {
        Self {
            text: text.into(),
            uri: text.parse::<Uri>().map_err(|e| e.to_string()),
        }
    }
}

/// One AWS service in one region with one identity, ready to call.
#[derive(Clone)]
pub struct AwsClient {
    http: PooledClient,
    call_timeout: Duration,
    endpoint: Endpoint,
    service: Service,
    region: Arc<str>,
    credentials: Arc<CachedCredentials>,
}

/// A request to an AWS service: its content type and, for the JSON protocol, its target.
pub struct AwsRequest<'a> {
    pub content_type: &'static str,
    /// `X-Amz-Target` (`AmazonSQS.SendMessageBatch`).
    pub target: Option<&'a str>,
    pub body: Vec<u8>,
}

impl AwsClient {
    pub fn service(&self) -> Service {
        self.service
    }

    /// Signs and sends one request; the body of a 2xx answer, or what went wrong.
    pub async fn call(&self, request: AwsRequest<'_>) -> Result<Bytes, CallError> {
        let credentials = self.credentials.get().await?;
        let mut headers: Vec<(&str, &str)> = vec![("content-type", request.content_type)];
        if let Some(target) = request.target {
            headers.push(("x-amz-target", target));
            // The SQS JSON protocol's flag for answering errors with their query-era codes
            // (`AWS.SimpleQueueService.NonExistentQueue`) in `x-amzn-query-error`.
            headers.push(("x-amzn-query-mode", "true"));
        }
        let signed = self.sign(&credentials, &headers, &request.body)?;
        let uri = self.endpoint.uri.clone().map_err(|e| {
            CallError::new(
                "dispatch",
                format!("the endpoint {} is not a URL: {e}", self.endpoint.text),
            )
        })?;
        let mut builder = Request::post(uri).header(USER_AGENT, HOOKRELAY);
        for (name, value) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| CallError::new("request", e.to_string()))?;
        let exchange = async {
            let answer = self
                .http
                .request(request)
                .await
                .map_err(|e| transport_error(&e))?;
            let status = answer.status().as_u16();
            // Headers are read only to explain a failure (SQS's error code travels in one).
            let failure_headers = (!(200..300).contains(&status)).then(|| answer.headers().clone());
            let body = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::new("dispatch", error_chain(&e)))?
                .to_bytes();
            Ok((status, failure_headers, body))
        };
        let (status, failure_headers, body) = tokio::time::timeout(self.call_timeout, exchange)
            .await
            .map_err(|_| no_answer_within(self.call_timeout, "aws.call_timeout"))??;
        match failure_headers {
            None => Ok(body),
            Some(headers) => Err(error_from_answer(status, &headers, &body)),
        }
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, and `x-amz-security-token` with
    /// temporary credentials) for a POST of `body` with `headers` to the endpoint.
    fn sign(
        &self,
        credentials: &Credentials,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, CallError> {
        let failed = |e: &dyn std::fmt::Display| {
            CallError::new("request", format!("signing the request failed: {e}"))
        };
        let identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name())
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            &*self.endpoint.text,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(&e))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

#[cfg(test)]
impl AwsClient {
    /// A client with fixed keys and an endpoint nothing listens on, for building requests.
    pub(crate) fn for_tests(service: Service) -> Self {
        let keys = Credentials::new("AKIDTEST", "secret", None, None, "test");
        Self {
            http: PooledClient::new(Arc::default(), Duration::from_secs(1))
                .expect("the system's CA certificates"),
            call_timeout: Duration::from_secs(1),
            endpoint: Endpoint::new("http://127.0.0.1:9"),
            service,
            region: "us-east-1".into(),
            credentials: Arc::new(CachedCredentials::new(SharedCredentialsProvider::new(keys))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_endpoints_follow_the_region() {
        assert_eq!(
            Service::Sqs.default_endpoint("eu-west-1"),
            "https://sqs.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            Service::Sns.default_endpoint("cn-north-1"),
            "https://sns.cn-north-1.amazonaws.com.cn"
        );
    }
}
