//! The read-only web UI on the HTTP port: `/` the fleet, `/ui/devices` search and filter,
//! `/ui/devices/{key}` the drill-down, `/ui/login` when reader tokens are on.
//!
//! Server-rendered HTML with maud: templates are Rust code checked at compile time, and every
//! `( )` splice is HTML-escaped, so a device-sent string (host name, server message, `extra`
//! line) can never become markup. There is no JavaScript and no asset route: the small
//! stylesheet is embedded in each page, which also makes a page printable into a ticket as is.
//! Pages read through the same functions as `/api/v1` (no second copy of any query), and sit
//! behind the same reader token ([`crate::auth::http_guard`] also accepts the login cookie).
//!
//! - [`layout`]: the shell, stylesheet, error page and URL helpers.
//! - [`fleet`]: the fleet page, `/`.
//! - [`devices`]: the device list, `/ui/devices`.
//! - [`device`]: the drill-down, `/ui/devices/{key}`.
//! - [`login`]: `/ui/login`, `/ui/logout` and the cookie.

pub mod device;
pub mod devices;
pub mod fleet;
pub mod layout;
pub mod login;

use axum::Router;
use axum::routing::{get, post};

use crate::api::AppState;

/// The UI routes, merged into the HTTP router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(fleet::page_handler))
        .route("/ui/devices", get(devices::page_handler))
        .route("/ui/devices/{key}", get(device::page_handler))
        .route(login::LOGIN_PATH, get(login::login_page).post(login::login))
        .route(login::LOGOUT_PATH, post(login::logout))
}

#[cfg(test)]
mod tests;
