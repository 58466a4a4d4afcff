//! SDK errors → classified [`AttemptError`]s.
//!
//! | exception (`x-amzn-ErrorType` / `:exception-type`) | class | retried |
//! | --- | --- | --- |
//! | `ThrottlingException` | `rate_limit` | yes |
//! | `ServiceQuotaExceededException` | `rate_limit` | no |
//! | `ServiceUnavailableException`, `InternalServerException`, `ModelNotReadyException`, `ModelErrorException`, `ModelStreamErrorException` | `server_error` | yes |
//! | `ModelTimeoutException` | `timeout` | yes |
//! | `AccessDeniedException` | `permission_denied` | no |
//! | `UnrecognizedClientException`, `ExpiredTokenException`, `InvalidSignatureException`, `IncompleteSignatureException`, `MissingAuthenticationTokenException` | `authentication` | no |
//! | `ValidationException`, `ConflictException` | `invalid_request` | no |
//! | `ResourceNotFoundException` | `not_found` | no |
//! | anything else | by HTTP status, as for every provider | |
//!
//! Transport failures: a timeout → `timeout`; connection errors → `network`;
//! no credentials in the chain → `authentication` (as a missing key); an
//! unreadable response → invalid response. Messages are the service's own
//! (never credentials), with the AWS request id when there is one.

use std::error::Error;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_smithy_types::event_stream::RawMessage;
use steer_metrics::ErrorClass;

use crate::error::{AttemptError, FailureKind};

/// The class of a Bedrock exception name (case-insensitive, as event-stream
/// frames name them `throttlingException`), and whether to retry.
pub(super) fn class_of(code: &str) -> Option<(ErrorClass, bool)> {
    let code = code.to_ascii_lowercase();
    Some(match code.as_str() {
        "throttlingexception" => (ErrorClass::RateLimit, true),
        "servicequotaexceededexception" => (ErrorClass::RateLimit, false),
        "serviceunavailableexception"
        | "internalserverexception"
        | "modelnotreadyexception"
        | "modelerrorexception"
        | "modelstreamerrorexception" => (ErrorClass::ServerError, true),
        "modeltimeoutexception" => (ErrorClass::Timeout, true),
        "accessdeniedexception" => (ErrorClass::PermissionDenied, false),
        "unrecognizedclientexception"
        | "expiredtokenexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception" => (ErrorClass::Authentication, false),
        "validationexception" | "conflictexception" => (ErrorClass::InvalidRequest, false),
        "resourcenotfoundexception" => (ErrorClass::NotFound, false),
        _ => return None,
    })
}

/// The HTTP status, `Retry-After` and AWS request id of a raw response,
/// where there are.
pub(super) trait RawStatus {
    fn status(&self) -> Option<u16>;
    fn retry_after(&self) -> Option<Duration>;
    fn request_id(&self) -> Option<&str>;
}

impl RawStatus for HttpResponse {
    fn status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
    fn retry_after(&self) -> Option<Duration> {
        let v = self.headers().get("retry-after")?.trim();
        let secs: f64 = v.parse().ok()?;
        (secs.is_finite() && (0.0..86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
    }
    fn request_id(&self) -> Option<&str> {
        let h = self.headers();
        h.get("x-amzn-requestid").or_else(|| h.get("x-amz-request-id"))
    }
}

/// A stream event frame: no status of its own.
impl RawStatus for RawMessage {
    fn status(&self) -> Option<u16> {
        None
    }
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    fn request_id(&self) -> Option<&str> {
        None
    }
}

/// Classify an SDK error of any operation (or of a stream event).
pub(super) fn from_sdk<E, R>(e: &SdkError<E, R>, timeout: Duration) -> AttemptError
where
    E: ProvideErrorMetadata + Error + 'static,
    R: RawStatus + std::fmt::Debug,
{
    let request_id = e.raw_response().and_then(RawStatus::request_id);
    match e {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let raw = ctx.raw();
            service_error(
                raw.status(),
                err.code(),
                err.message(),
                request_id,
                raw.retry_after(),
            )
        }
        SdkError::TimeoutError(_) => AttemptError::timeout(timeout),
        SdkError::DispatchFailure(d) => {
            let msg = chain("request failed", e);
            if d.is_timeout() {
                AttemptError::timeout(timeout)
            } else if d.is_other() && msg.to_ascii_lowercase().contains("credential") {
                let mut a = AttemptError::new(
                    FailureKind::MissingKey,
                    ErrorClass::Authentication,
                    format!("no AWS credentials for Bedrock: {msg}"),
                );
                a.retryable = false;
                a
            } else if d.is_user() {
                let mut a = AttemptError::new(FailureKind::Api, ErrorClass::InvalidRequest, msg);
                a.retryable = false;
                a
            } else {
                AttemptError::network(msg)
            }
        }
        SdkError::ResponseError(_) => {
            let status = e.raw_response().and_then(RawStatus::status);
            match status {
                // An error status whose body could not be read: classify by status.
                Some(s) if s >= 400 => service_error(Some(s), None, None, request_id, None),
                _ => AttemptError::invalid(chain("unreadable response from Bedrock", e)),
            }
        }
        SdkError::ConstructionFailure(_) => {
            let mut a = AttemptError::new(
                FailureKind::Api,
                ErrorClass::InvalidRequest,
                chain("cannot build the Bedrock request", e),
            );
            a.retryable = false;
            a
        }
        _ => AttemptError::new(
            FailureKind::Api,
            ErrorClass::Unknown,
            chain("Bedrock call failed", e),
        ),
    }
}

/// An error of a started stream: an exception frame (classified by its
/// `:exception-type`, whose name the SDK keeps in the variant) or a
/// transport failure.
pub(super) fn from_stream(
    e: &SdkError<ConverseStreamOutputError, RawMessage>,
    timeout: Duration,
) -> AttemptError {
    use ConverseStreamOutputError as X;
    let Some(err) = e.as_service_error() else {
        return from_sdk(e, timeout);
    };
    let code = match err {
        X::ThrottlingException(_) => Some("ThrottlingException"),
        X::ServiceUnavailableException(_) => Some("ServiceUnavailableException"),
        X::InternalServerException(_) => Some("InternalServerException"),
        X::ModelStreamErrorException(_) => Some("ModelStreamErrorException"),
        X::ValidationException(_) => Some("ValidationException"),
        _ => err.code(),
    };
    let mut a = service_error(None, code, err.message(), None, None);
    if a.class == ErrorClass::Unknown {
        // An exception Bedrock added later: the stream failed on its side.
        a.class = ErrorClass::ServerError;
        a.retryable = true;
    }
    a
}

/// An error Bedrock reported: by exception name, else by HTTP status.
pub(super) fn service_error(
    status: Option<u16>,
    code: Option<&str>,
    message: Option<&str>,
    request_id: Option<&str>,
    retry_after: Option<Duration>,
) -> AttemptError {
    let (class, retryable) = code
        .and_then(class_of)
        .unwrap_or_else(|| crate::error::classify(status, None, None));
    let mut msg = match (message, code) {
        (Some(m), _) if !m.trim().is_empty() => m.trim().to_string(),
        (_, Some(c)) => c.to_string(),
        _ => status.map_or_else(|| "Bedrock error".to_string(), |s| format!("HTTP {s}")),
    };
    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
        msg = format!(
            "{msg} (provider request id {})",
            crate::error::truncate(id.to_string(), 80)
        );
    }
    let mut a = AttemptError::new(FailureKind::Api, class, msg);
    a.retryable = retryable;
    a.status = status;
    a.provider_code = code.map(str::to_string);
    a.retry_after = retry_after;
    a
}

/// `what`, then the error's sources (three at most): "dispatch failure:
/// io error: connection refused".
fn chain(what: &str, e: &dyn Error) -> String {
    let mut msg = what.to_string();
    let mut src = e.source();
    let mut depth = 0;
    while let Some(s) = src {
        if depth == 3 {
            break;
        }
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
        depth += 1;
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_names_map_to_classes() {
        use ErrorClass::*;
        for (code, want) in [
            ("ThrottlingException", (RateLimit, true)),
            ("throttlingException", (RateLimit, true)),
            ("ServiceQuotaExceededException", (RateLimit, false)),
            ("ServiceUnavailableException", (ServerError, true)),
            ("InternalServerException", (ServerError, true)),
            ("ModelNotReadyException", (ServerError, true)),
            ("modelStreamErrorException", (ServerError, true)),
            ("ModelTimeoutException", (Timeout, true)),
            ("AccessDeniedException", (PermissionDenied, false)),
            ("UnrecognizedClientException", (Authentication, false)),
            ("ExpiredTokenException", (Authentication, false)),
            ("ValidationException", (InvalidRequest, false)),
            ("ResourceNotFoundException", (NotFound, false)),
        ] {
            assert_eq!(class_of(code), Some(want), "{code}");
        }
        assert_eq!(class_of("SomethingNew"), None);
    }

    #[test]
    fn unknown_exceptions_fall_back_to_the_status() {
        let e = service_error(Some(503), Some("SomethingNew"), Some("busy"), Some("req-1"), None);
        assert_eq!(e.class, ErrorClass::ServerError);
        assert!(e.retryable);
        assert_eq!(e.message, "busy (provider request id req-1)");
        assert_eq!(e.provider_code.as_deref(), Some("SomethingNew"));
        let e = service_error(Some(429), None, None, None, Some(Duration::from_secs(2)));
        assert_eq!(e.class, ErrorClass::RateLimit);
        assert_eq!(e.message, "HTTP 429");
        assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
        let e = service_error(None, None, None, None, None);
        assert_eq!(e.class, ErrorClass::Unknown);
    }
}
