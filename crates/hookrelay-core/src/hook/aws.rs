//! AWS names a hook refers to, each validated once when parsed (`FromStr`), so nothing below the
//! API re-checks a raw string. The rules follow AWS's documented formats; they are strict on
//! purpose, because a typo found at `PATCH /app` is far cheaper than one found at delivery time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name was refused; the text completes "<field>: …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn` partitions AWS documents: aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f, aws-eusc.
fn is_partition(s: &str) -> bool {
    s == "aws"
        || (s.starts_with("aws-") && s[4..].bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                s.parse()
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// An AWS region name such as `us-east-1`, `eu-central-2` or `us-gov-west-1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);
string_newtype!(Region);

impl FromStr for Region {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts[0].len() == 2
            && parts[0].bytes().all(|b| b.is_ascii_lowercase())
            && parts[1..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts[parts.len() - 1].parse::<u8>().is_ok();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError(format!(
                "{s:?} is not an AWS region name (like us-east-1)"
            )))
        }
    }
}

/// The name part of a queue or topic: letters, digits, `-` and `_`, optionally ending in `.fifo`.
fn valid_resource_name(name: &str, max: usize) -> bool {
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    !base.is_empty()
        && name.len() <= max
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An SQS queue URL. The AWS forms: `https://sqs.<region>.amazonaws.com/<account>/<name>` (also
/// the `.com.cn` and `api.aws` hosts), the legacy `https://<region>.queue.amazonaws.com/…` and
/// `https://queue.amazonaws.com/…` (us-east-1), and VPC endpoints
/// (`https://vpce-….sqs.<region>.vpce.amazonaws.com/…`). Any other `http(s)://host[:port]/
/// <account>/<name>` is a local emulator's URL (moto, LocalStack): it parses, so a stored hook
/// always loads, but a new hook may use one only when the server's AWS endpoint points at that
/// emulator ([`QueueUrl::check_reachable`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueUrl(String);
string_newtype!(QueueUrl);

/// The example every queue URL error shows.
const QUEUE_URL_EXAMPLE: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/my-queue";

/// `scheme://host[:port]` split into its parts, the port made explicit.
fn origin(url: &str) -> Option<(&str, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (&authority[..ip.len() + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port),
        }
    };
    (!host.is_empty()).then(|| (scheme, host.to_ascii_lowercase(), port))
}

/// Names that all mean "this machine" to an emulator on it.
fn is_local_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
        || host.ends_with(".localhost")
        || host.ends_with(".localhost.localstack.cloud")
}

/// The region in an AWS queue URL's host, or `None` for a host that is not one of AWS's.
fn aws_queue_host_region(host: &str) -> Option<&str> {
    if host == "queue.amazonaws.com" {
        return Some("us-east-1");
    }
    if let Some(rest) = host.strip_prefix("sqs.") {
        let (region, domain) = rest.split_once('.')?;
        return matches!(domain, "amazonaws.com" | "amazonaws.com.cn" | "api.aws")
            .then_some(region);
    }
    if host.starts_with("vpce-")
        && let Some(rest) = host.strip_suffix(".vpce.amazonaws.com")
    {
        return rest.split_once(".sqs.").map(|(_, region)| region);
    }
    host.strip_suffix(".queue.amazonaws.com")
}

impl QueueUrl {
    fn host(&self) -> &str {
        self.0
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
            .unwrap_or_default()
    }

    /// Whether this is one of AWS's forms (not a local emulator's URL).
    pub fn is_aws(&self) -> bool {
        self.0.starts_with("https://") && aws_queue_host_region(self.host()).is_some()
    }

    /// The region named in the host, when the host names one.
    pub fn region(&self) -> Option<&str> {
        if self.is_aws() {
            aws_queue_host_region(self.host())
        } else {
            None
        }
    }

    pub fn account(&self) -> &str {
        self.0.rsplit('/').nth(1).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// FIFO queues end in `.fifo` and need a group id and a deduplication id on every message.
    pub fn is_fifo(&self) -> bool {
        self.0.ends_with(".fifo")
    }

    /// An AWS URL is always fine. An emulator's URL is fine only when one of the server's AWS
    /// endpoints (`aws.endpoint_url`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SQS`) is that emulator:
    /// same scheme and port, and the same host or two names of this machine. Otherwise the error
    /// says what to do instead.
    pub fn check_reachable(&self, endpoints: &[String]) -> Result<(), NameError> {
        if self.is_aws() {
            return Ok(());
        }
        let Some((scheme, host, port)) = origin(&self.0) else {
            return Err(not_a_queue_url(&self.0));
        };
        let served = endpoints.iter().filter_map(|e| origin(e)).any(|(s, h, p)| {
            s == scheme && p == port && (h == host || (is_local_host(&h) && is_local_host(&host)))
        });
        if served {
            return Ok(());
        }
        Err(NameError(format!(
            "{:?} is not an AWS SQS queue URL (like {QUEUE_URL_EXAMPLE}); an emulator's URL is accepted only when the server's aws.endpoint_url (or AWS_ENDPOINT_URL) points at it. For local testing, keep the AWS-form URL and set AWS_ENDPOINT_URL on the server",
            self.0
        )))
    }
}

fn not_a_queue_url(s: &str) -> NameError {
    NameError(format!(
        "{s:?} is not an SQS queue URL (like {QUEUE_URL_EXAMPLE})"
    ))
}

impl FromStr for QueueUrl {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = || not_a_queue_url(s);
        let (scheme, rest) = s.split_once("://").ok_or_else(err)?;
        let mut parts = rest.split('/');
        let (host, account, name) = (parts.next(), parts.next(), parts.next());
        let (Some(host), Some(account), Some(name), None) = (host, account, name, parts.next())
        else {
            return Err(err());
        };
        let host_ok = match aws_queue_host_region(host) {
            // AWS hosts: HTTPS and a real region only.
            Some(region) => scheme == "https" && region.parse::<Region>().is_ok(),
            // An emulator: any host name (checked against the endpoints when a hook is saved).
            None => {
                matches!(scheme, "http" | "https")
                    && !host.is_empty()
                    && !host.ends_with(".amazonaws.com")
                    && origin(s).is_some()
            }
        };
        if host_ok && is_account_id(account) && valid_resource_name(name, 80) {
            Ok(Self(s.to_owned()))
        } else {
            Err(err())
        }
    }
}

/// An SNS topic ARN: `arn:<partition>:sns:<region>:<account>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicArn(String);
string_newtype!(TopicArn);

impl TopicArn {
    pub fn region(&self) -> &str {
        self.0.split(':').nth(3).unwrap_or_default()
    }

    pub fn is_fifo(&self) -> bool {
        self.0.ends_with(".fifo")
    }
}

impl FromStr for TopicArn {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let p: Vec<&str> = s.split(':').collect();
        let ok = p.len() == 6
            && p[0] == "arn"
            && is_partition(p[1])
            && p[2] == "sns"
            && p[3].parse::<Region>().is_ok()
            && is_account_id(p[4])
            && valid_resource_name(p[5], 256);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError(format!(
                "{s:?} is not an SNS topic ARN (like arn:aws:sns:us-east-1:123456789012:my-topic)"
            )))
        }
    }
}

/// An IAM role ARN: `arn:<partition>:iam::<account>:role/<optional path/>name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoleArn(String);
string_newtype!(RoleArn);

impl FromStr for RoleArn {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let p: Vec<&str> = s.splitn(6, ':').collect();
        let ok = p.len() == 6
            && p[0] == "arn"
            && is_partition(p[1])
            && p[2] == "iam"
            && p[3].is_empty()
            && is_account_id(p[4])
            && p[5].strip_prefix("role/").is_some_and(|name| {
                !name.is_empty()
                    && name.len() <= 512
                    && !name.ends_with('/')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError(format!(
                "{s:?} is not an IAM role ARN (like arn:aws:iam::123456789012:role/my-role)"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-5",
            "cn-north-1",
        ] {
            assert!(ok.parse::<Region>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "useast1",
            "US-EAST-1",
            "us--1",
            "us-east-1a",
            "us east 1",
        ] {
            assert!(bad.parse::<Region>().is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_urls() {
        let q: QueueUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/MyQueue"
            .parse()
            .unwrap();
        assert_eq!(
            (q.region(), q.account(), q.name()),
            (Some("us-east-1"), "123456789012", "MyQueue")
        );
        assert!(!q.is_fifo());
        let fifo: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo"
            .parse()
            .unwrap();
        assert!(fifo.is_fifo());
        for (url, region) in [
            (
                "https://us-west-2.queue.amazonaws.com/123456789012/q",
                "us-west-2",
            ),
            ("https://queue.amazonaws.com/123456789012/q", "us-east-1"),
            (
                "https://vpce-0a1b2c3d4e5f67890-abcdefgh.sqs.eu-west-1.vpce.amazonaws.com/123456789012/q",
                "eu-west-1",
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                "cn-north-1",
            ),
        ] {
            let q: QueueUrl = url.parse().unwrap();
            assert_eq!(q.region(), Some(region), "{url}");
            assert!(q.is_aws() && q.check_reachable(&[]).is_ok(), "{url}");
        }
        for bad in [
            "https://foo.com/bar",
            "http://sqs.us-east-1.amazonaws.com/123456789012/q",
            "https://sqs.nowhere.amazonaws.com/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com/12345/q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/",
            "https://sqs.us-east-1.amazonaws.com/123456789012/a/b",
            "https://sqs.us-east-1.amazonaws.com/123456789012/bad name",
            "https://sqs.us-east-1.evil.amazonaws.com/123456789012/q",
            "ftp://localhost:4566/000000000000/q",
            "sqs.us-east-1.amazonaws.com/123456789012/q",
        ] {
            assert!(bad.parse::<QueueUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn emulator_queue_urls_need_a_matching_endpoint() {
        let endpoints = |e: &[&str]| e.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (url, endpoint) in [
            (
                "http://localhost:4566/000000000000/q",
                "http://localhost:4566",
            ),
            (
                "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/q",
                "http://localhost:4566/",
            ),
            (
                "http://127.0.0.1:5000/123456789012/q.fifo",
                "http://localhost:5000",
            ),
            (
                "https://sqs.internal.example:8443/123456789012/q",
                "https://SQS.internal.example:8443/",
            ),
        ] {
            let q: QueueUrl = url.parse().unwrap();
            assert!(!q.is_aws() && q.region().is_none(), "{url}");
            assert!(q.check_reachable(&endpoints(&[endpoint])).is_ok(), "{url}");
            let refused = q.check_reachable(&[]).unwrap_err().0;
            assert!(refused.contains("AWS_ENDPOINT_URL"), "{refused}");
        }
        let q: QueueUrl = "http://localhost:4566/000000000000/q".parse().unwrap();
        for other in [
            "http://localhost:4567",
            "https://localhost:4566",
            "http://10.0.0.1:4566",
        ] {
            assert!(q.check_reachable(&endpoints(&[other])).is_err(), "{other}");
        }
        let evil: QueueUrl = "https://sqs.us-east-1.evil.com/123456789012/q"
            .parse()
            .unwrap();
        assert!(
            evil.check_reachable(&endpoints(&["http://localhost:4566"]))
                .is_err()
        );
    }

    #[test]
    fn topic_and_role_arns() {
        let t: TopicArn = "arn:aws:sns:us-east-1:123456789012:sns-topic"
            .parse()
            .unwrap();
        assert_eq!(t.region(), "us-east-1");
        assert!(
            "arn:aws-cn:sns:cn-north-1:123456789012:t.fifo"
                .parse::<TopicArn>()
                .unwrap()
                .is_fifo()
        );
        for bad in [
            "arn:aws:sqs:us-east-1:123456789012:q",
            "arn:aws:sns:us-east-1:1111111111:t",
            "arn:aws:sns:nowhere:123456789012:t",
            "arn:aws:sns:us-east-1:123456789012:",
            "sns-topic",
        ] {
            assert!(bad.parse::<TopicArn>().is_err(), "{bad}");
        }
        assert!(
            "arn:aws:iam::123456789012:role/SNSPublishRole"
                .parse::<RoleArn>()
                .is_ok()
        );
        assert!(
            "arn:aws:iam::123456789012:role/path/to/Role"
                .parse::<RoleArn>()
                .is_ok()
        );
        assert!(
            "arn:aws:iam::123456789012:user/bob"
                .parse::<RoleArn>()
                .is_err()
        );
        assert!(
            "arn:aws:iam:us-east-1:123456789012:role/x"
                .parse::<RoleArn>()
                .is_err()
        );
    }
}
