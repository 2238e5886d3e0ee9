//! The collector's request-level error and the ONE place that maps it to a gRPC code and an
//! HTTP status.
//!
//! Layers below (store, validation, API parameters) have their own `thiserror` enums; they
//! convert into [`Error`] at the service boundary. Messages are lower-case, specific, and name
//! the bad field or value. Internal details (SQLite messages) are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Default retry hint given to clients when the writer queue is full.
pub const RETRY_AFTER_MS: u64 = 1000;

/// An error answered to a client (gRPC or HTTP).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a field, parameter or limit, named in the message.
    #[error("{0}")]
    InvalidArgument(String),
    /// Nothing matches the key.
    #[error("{0}")]
    NotFound(String),
    /// No token, a wrong token, or a token of another role (one answer for all three).
    #[error("{0}")]
    Unauthenticated(String),
    /// Backpressure: the writer queue is full; retry after the hint.
    #[error("ingest queue is full, retry after {retry_after_ms} ms")]
    Overloaded {
        /// How long the client should wait.
        retry_after_ms: u64,
    },
    /// The store is closed (shutting down) or its writer is gone.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else; details are logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// A valid credential that does not allow this (e.g. the enroll secret on `Report`).
    #[error("{0}")]
    PermissionDenied(String),
    /// The call cannot work in the collector's configuration (e.g. enrollment is off).
    #[error("{0}")]
    FailedPrecondition(String),
    /// This client is over its rate limit; retry after the hint.
    #[error("{what} is over its rate limit, retry after {retry_after_ms} ms")]
    RateLimited {
        /// Which client (`device token`, `peer address`), never its identity.
        what: &'static str,
        /// How long the client should wait.
        retry_after_ms: u64,
    },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => Error::Overloaded {
                retry_after_ms: RETRY_AFTER_MS,
            },
            StoreError::Closed => Error::Unavailable("the collector is shutting down".into()),
            e if e.is_disk_full() => {
                tracing::error!(error = %e, "database disk is full: reports refused");
                Error::Unavailable("the collector's disk is full; nothing was stored".into())
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

impl Error {
    /// The gRPC code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Error::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Error::NotFound(_) => tonic::Code::NotFound,
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::Overloaded { .. } | Error::Unavailable(_) => tonic::Code::Unavailable,
            Error::Internal(_) => tonic::Code::Internal,
            Error::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Error::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Error::RateLimited { .. } => tonic::Code::ResourceExhausted,
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Overloaded { .. } | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Error::FailedPrecondition(_) => StatusCode::CONFLICT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `reason` of `dsreg_ingest_refused_total` when this error refuses a call for load
    /// or rate, before anything is stored (the caller retries after the hint); `None` for
    /// every other error.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            Error::Overloaded { .. } => Some("busy"),
            Error::RateLimited { .. } => Some("rate_limited"),
            _ => None,
        }
    }

    fn log_internal(&self) {
        if let Error::Internal(detail) = self {
            tracing::error!(error = %detail, "internal error");
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        e.log_internal();
        let mut status = tonic::Status::new(e.grpc_code(), e.to_string());
        let hint = match e {
            Error::Overloaded { retry_after_ms } | Error::RateLimited { retry_after_ms, .. } => {
                Some(retry_after_ms)
            }
            _ => None,
        };
        if let Some(retry_after_ms) = hint
            && let Ok(v) = retry_after_ms.to_string().parse()
        {
            status.metadata_mut().insert("retry-after-ms", v);
        }
        status
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log_internal();
        let status = self.http_status();
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        let mut resp = (status, body).into_response();
        if let Error::Unauthenticated(_) = self {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Error::Overloaded { retry_after_ms } = self {
            let secs = retry_after_ms.div_ceil(1000).to_string();
            if let Ok(v) = secs.parse() {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_for_both_protocols() {
        let e = Error::from(StoreError::Full);
        assert_eq!(e.grpc_code(), tonic::Code::Unavailable);
        assert_eq!(e.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        let status = tonic::Status::from(e);
        assert_eq!(
            status
                .metadata()
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok()),
            Some("1000")
        );
        let e = Error::InvalidArgument("reports[0].machine_id: required".into());
        assert_eq!(e.http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    }
}
