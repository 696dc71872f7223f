//! `POST /check_sqs` and `POST /check_sns`: try a destination for real and report.
//!
//! As on Stream, the answer is 201 whether the check passes or not; the verdict is `status`
//! (`ok` or `error`), with `error` and `data` explaining a failure. With no
//! arguments, every SQS (or SNS) hook of the app is checked, and the legacy app-level settings.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hookrelay_core::hook::input::{Fields, HookRules};
use hookrelay_core::hook::{QueueUrl, Region, TopicArn};
use hookrelay_core::{AwsAuth, HookType, Secret, Target};
use hookrelay_delivery::check::CheckFailure;
use serde_json::{Value, json};

use crate::auth::AppAuth;
use crate::context::duration;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::state::AppState;

type CheckResponse = (StatusCode, Json<Value>);

pub async fn sqs(
    state: State<AppState>,
    auth: AppAuth,
    body: JsonBody,
) -> ApiResult<CheckResponse> {
    check(state, auth, body, HookType::Sqs).await
}

pub async fn sns(
    state: State<AppState>,
    auth: AppAuth,
    body: JsonBody,
) -> ApiResult<CheckResponse> {
    check(state, auth, body, HookType::Sns).await
}

async fn check(
    State(state): State<AppState>,
    AppAuth(app): AppAuth,
    body: JsonBody,
    kind: HookType,
) -> ApiResult<CheckResponse> {
    let request = body.object().await?;
    let f = Fields(&request);
    let p = kind.as_str();
    let (key, secret) = (
        f.str(&format!("{p}_key")).map_err(field)?,
        f.str(&format!("{p}_secret")).map_err(field)?,
    );
    let location_field = if kind == HookType::Sqs {
        "sqs_url"
    } else {
        "sns_topic_arn"
    };
    let location = f.str(location_field).map_err(field)?;

    let targets: Vec<(String, Result<Target, CheckFailure>)> = match location {
        Some(location) => {
            let auth = match (key, secret) {
                (Some(key), Some(secret)) => AwsAuth::Keys {
                    key: key.to_owned(),
                    secret: Secret::new(secret),
                },
                (None, None) => AwsAuth::Resource,
                _ => {
                    return Ok(verdict(Err(CheckFailure::new(format!(
                        "{p}_key and {p}_secret must be given together"
                    )))));
                }
            };
            vec![(
                location.to_owned(),
                parse_target(kind, location, auth, &state.hook_rules),
            )]
        }
        None if key.is_some() || secret.is_some() => {
            return Ok(verdict(Err(CheckFailure::new(format!(
                "{location_field} is required when {p}_key or {p}_secret is given"
            )))));
        }
        None => configured_targets(&state, &app, kind).await?,
    };
    if targets.is_empty() {
        return Ok(verdict(Err(CheckFailure::new(format!(
            "no {} is configured for this app: pass {location_field}, or add a {p} hook",
            if kind == HookType::Sqs {
                "SQS queue"
            } else {
                "SNS topic"
            }
        )))));
    }
    let mut failures = Vec::new();
    for (label, target) in targets.iter() {
        let result = match target {
            Ok(target) => state.delivery.check(&app, target).await,
            Err(failure) => Err(failure.clone()),
        };
        if let Err(failure) = result {
            failures.push((label.clone(), failure));
        }
    }
    let outcome = match failures.len() {
        0 => Ok(()),
        1 if targets.len() == 1 => Err(failures.remove(0).1),
        _ => {
            let error = failures
                .iter()
                .map(|(label, f)| format!("{label}: {}", f.error))
                .collect::<Vec<_>>()
                .join("; ");
            let data = failures
                .into_iter()
                .map(|(label, f)| (label, Value::Object(f.data)))
                .collect();
            Err(CheckFailure { error, data })
        }
    };
    Ok(verdict(outcome))
}

fn field(e: hookrelay_core::hook::input::FieldError) -> ApiError {
    ApiError::field(&e.field, &e.reason)
}

/// A queue URL or topic ARN given to a check, with the error texts Stream's SDK tests expect.
fn parse_target(
    kind: HookType,
    location: &str,
    auth: AwsAuth,
    rules: &HookRules,
) -> Result<Target, CheckFailure> {
    match kind {
        HookType::Sqs => {
            let queue_url: QueueUrl = location
                .parse()
                .map_err(|_| CheckFailure::new(format!("invalid SQS url {location}")))?;
            queue_url
                .check_reachable(&rules.aws_endpoints)
                .map_err(|e| CheckFailure::new(format!("invalid SQS url {location}: {e}")))?;
            // An emulator's URL names no region, and emulators take any: sign for us-east-1.
            let region = region_of(
                queue_url
                    .region()
                    .or((!queue_url.is_aws()).then_some("us-east-1")),
            )?;
            Ok(Target::Sqs {
                queue_url,
                region,
                auth,
            })
        }
        _ => {
            let topic_arn: TopicArn = location
                .parse()
                .map_err(|_| CheckFailure::new(format!("invalid SNS topic arn {location}")))?;
            let region = region_of(Some(topic_arn.region()))?;
            Ok(Target::Sns {
                topic_arn,
                region,
                auth,
            })
        }
    }
}

fn region_of(name: Option<&str>) -> Result<Region, CheckFailure> {
    name.and_then(|r| r.parse().ok()).ok_or_else(|| {
        CheckFailure::new("cannot tell the AWS region from the queue URL or topic ARN")
    })
}

/// The app's hooks of this kind, then its legacy app-level setting.
async fn configured_targets(
    state: &AppState,
    app: &hookrelay_store::App,
    kind: HookType,
) -> ApiResult<Vec<(String, Result<Target, CheckFailure>)>> {
    let mut out: Vec<(String, Result<Target, CheckFailure>)> = state
        .store
        .hooks(app.id)
        .await?
        .into_iter()
        .filter(|h| h.target.hook_type() == kind)
        .map(|h| (format!("hook {}", h.id.wire(app.id)), Ok(h.target)))
        .collect();
    let p = kind.as_str();
    let legacy_field = if kind == HookType::Sqs {
        "sqs_url"
    } else {
        "sns_topic_arn"
    };
    if let Some(location) = app
        .settings
        .fields
        .get(legacy_field)
        .and_then(Value::as_str)
        && !location.is_empty()
    {
        let key = app
            .settings
            .fields
            .get(&format!("{p}_key"))
            .and_then(Value::as_str);
        let secret = app.settings.secrets.get(&format!("{p}_secret"));
        let auth = match (key, secret) {
            (Some(key), Some(secret)) if !key.is_empty() => AwsAuth::Keys {
                key: key.to_owned(),
                secret: secret.clone(),
            },
            _ => AwsAuth::Resource,
        };
        // The legacy field may hold any URL (Stream only checks that it is one): a bad one is
        // reported by the check, not hidden.
        out.push((
            location.to_owned(),
            parse_target(kind, location, auth, &state.hook_rules),
        ));
    }
    Ok(out)
}

fn verdict(outcome: Result<(), CheckFailure>) -> CheckResponse {
    let body = match outcome {
        Ok(()) => json!({"status": "ok", "duration": duration()}),
        Err(f) => {
            json!({"status": "error", "error": f.error, "data": f.data, "duration": duration()})
        }
    };
    (StatusCode::CREATED, Json(body))
}
