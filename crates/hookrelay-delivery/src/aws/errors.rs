//! What a failed AWS call was, as a [`CallError`]: the service's error code and message when it
//! answered (`AccessDenied`, `AWS.SimpleQueueService.NonExistentQueue`, …), else the transport's
//! failure (`timeout`, `connection`, `dispatch`) or the bare status (`HTTP 502`). What it means
//! for delivery is `outcome::classify_call_error`'s decision.

use http::HeaderMap;

use crate::outcome::CallError;

/// A call that got no answer (a timeout is the caller's to tell).
pub fn transport_error(error: &hyper_util::client::legacy::Error) -> CallError {
    let code = if error.is_connect() {
        "connection"
    } else {
        "dispatch"
    };
    CallError::new(code, error_chain(error))
}

/// An answer other than 2xx, in either protocol: the JSON protocol's `__type` (or `code`) and
/// `message`, where SQS's `x-amzn-query-error` header carries the code users know from the
/// query era; or an XML `<Code>` and `<Message>` (SNS, STS, and emulators answering auth
/// errors in XML whatever the protocol).
pub fn error_from_answer(status: u16, headers: &HeaderMap, body: &[u8]) -> CallError {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (body_code, message) = json_error(body)
        .or_else(|| xml_error(body))
        .unwrap_or_default();
    let code = header("x-amzn-query-error")
        .and_then(|v| v.split_once(';'))
        .map(|(code, _kind)| code.to_owned())
        .or_else(|| header("x-amzn-errortype").map(|t| sanitize_code(t).to_owned()))
        .or(body_code)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = message
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned());
    CallError {
        http_status: Some(status),
        ..CallError::new(code, message)
    }
}

type CodeAndMessage = (Option<String>, Option<String>);

fn json_error(body: &[u8]) -> Option<CodeAndMessage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        code: Option<String>,
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message", alias = "errorMessage")]
        message: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let code = answer
        .code
        .or(answer.kind)
        .map(|c| sanitize_code(&c).to_owned());
    Some((code, answer.message))
}

/// `com.amazonaws.sqs#QueueDoesNotExist:http://…` → `QueueDoesNotExist`.
fn sanitize_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code)
}

fn xml_error(body: &[u8]) -> Option<CodeAndMessage> {
    let text = std::str::from_utf8(body).ok()?;
    let code = xml_text(text, "Code")?;
    Some((Some(code), xml_text(text, "Message")))
}

/// The text of the first `<name>` element, unescaped.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(unescape_xml(xml[start..end].trim()))
}

fn unescape_xml(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The error and its causes, one line: "error sending request: … Connection refused".
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
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

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::outcome::{Outcome, classify_call_error};

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> CallError {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_static(value));
        }
        error_from_answer(status, &map, body.as_bytes())
    }

    #[test]
    fn sqs_json_errors_keep_their_query_era_code() {
        let e = answer(
            400,
            &[(
                "x-amzn-query-error",
                "AWS.SimpleQueueService.NonExistentQueue;Sender",
            )],
            r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
        );
        assert_eq!(e.code, "AWS.SimpleQueueService.NonExistentQueue");
        assert_eq!(e.message, "The specified queue does not exist.");
        assert_eq!(e.http_status, Some(400));
        let e = answer(
            400,
            &[],
            r#"{"__type":"com.amazonaws.sqs#InvalidParameterValue","Message":"too long"}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("InvalidParameterValue", "too long")
        );
        assert!(matches!(
            classify_call_error(e),
            Outcome::Refuse { attempts: 1, .. }
        ));
    }

    #[test]
    fn xml_errors_of_sns_and_emulators_are_read() {
        let e = answer(
            403,
            &[],
            "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>\
             <Message>The request signature &amp; the key don&apos;t match.</Message></Error></ErrorResponse>",
        );
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert_eq!(e.message, "The request signature & the key don't match.");
        assert!(matches!(
            classify_call_error(e),
            Outcome::DestinationDown(_)
        ));
    }

    #[test]
    fn an_answer_without_an_error_body_is_its_status() {
        let e = answer(502, &[], "bad gateway");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("HTTP 502", "bad gateway")
        );
        assert!(matches!(
            classify_call_error(e),
            Outcome::DestinationDown(_)
        ));
    }
}
