//! The admin API: revoking a device's credential.
//!
//! `DELETE /api/v1/devices/{machine_id}/credential` deletes the device token of that machine
//! id (204; 404 when it has none). The device's next report is UNAUTHENTICATED; its agent then
//! enrolls again once, which needs the enroll secret — so revoking a device for good also
//! means keeping the enroll secret from it (rotate the secret). Every path here needs an admin
//! token (`--admin-token-file`, checked in [`crate::auth::http_guard`]); without that file the
//! admin API answers 401 to everyone, even on loopback.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;

use crate::enroll::DeviceTokens;
use crate::error::Error;

/// True for the paths of the admin API (they need an admin token, not a reader token).
pub fn is_admin_path(path: &str) -> bool {
    path.strip_prefix("/api/v1/devices/")
        .is_some_and(|rest| rest.ends_with("/credential"))
}

/// The admin routes; `devices` is `None` when enrollment is off (then every call is 409).
pub fn router(devices: Option<Arc<DeviceTokens>>) -> Router {
    Router::new()
        .route("/api/v1/devices/{key}/credential", delete(revoke))
        .with_state(devices)
}

async fn revoke(
    State(devices): State<Option<Arc<DeviceTokens>>>,
    Path(key): Path<String>,
) -> Response {
    let Some(devices) = devices else {
        return Error::FailedPrecondition(
            "enrollment is off on this collector (no --enroll-secret-file)".into(),
        )
        .into_response();
    };
    let k = key.clone();
    match tokio::task::spawn_blocking(move || devices.revoke(&k)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => {
            Error::NotFound(format!("no device credential for machine id {key:?}")).into_response()
        }
        Ok(Err(e)) => Error::Internal(e.to_string()).into_response(),
        Err(e) => Error::Internal(e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_paths() {
        assert!(is_admin_path("/api/v1/devices/m-1/credential"));
        assert!(!is_admin_path("/api/v1/devices/m-1"));
        assert!(!is_admin_path("/api/v1/devices/credential"));
        assert!(!is_admin_path("/metrics"));
    }
}
