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

/// An SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<name>` (also the `.com.cn`
/// and `api.aws` hosts, and the legacy `<region>.queue.amazonaws.com`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueUrl(String);
string_newtype!(QueueUrl);

impl QueueUrl {
    /// The region named in the host, when the host names one.
    pub fn region(&self) -> Option<&str> {
        let host = self.0.strip_prefix("https://")?.split('/').next()?;
        if let Some(rest) = host.strip_prefix("sqs.") {
            return rest.split('.').next();
        }
        host.strip_suffix(".queue.amazonaws.com")
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
}

impl FromStr for QueueUrl {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        let err = || {
            NameError(format!(
                "{s:?} is not an SQS queue URL (like https://sqs.us-east-1.amazonaws.com/123456789012/my-queue)"
            ))
        };
        let rest = s.strip_prefix("https://").ok_or_else(err)?;
        let mut parts = rest.split('/');
        let (host, account, name) = (parts.next(), parts.next(), parts.next());
        let (Some(host), Some(account), Some(name), None) = (host, account, name, parts.next())
        else {
            return Err(err());
        };
        let host_ok = match host.strip_prefix("sqs.") {
            Some(rest) => {
                let (region, domain) = rest.split_once('.').ok_or_else(err)?;
                region.parse::<Region>().is_ok()
                    && matches!(domain, "amazonaws.com" | "amazonaws.com.cn" | "api.aws")
            }
            None => host
                .strip_suffix(".queue.amazonaws.com")
                .is_some_and(|r| r.parse::<Region>().is_ok()),
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
        let legacy: QueueUrl = "https://us-west-2.queue.amazonaws.com/123456789012/q"
            .parse()
            .unwrap();
        assert_eq!(legacy.region(), Some("us-west-2"));
        for bad in [
            "https://foo.com/bar",
            "http://sqs.us-east-1.amazonaws.com/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com/12345/q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/",
            "https://sqs.us-east-1.amazonaws.com/123456789012/a/b",
            "https://sqs.us-east-1.evil.com/123456789012/q",
            "https://sqs.us-east-1.amazonaws.com/123456789012/bad name",
        ] {
            assert!(bad.parse::<QueueUrl>().is_err(), "{bad}");
        }
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
