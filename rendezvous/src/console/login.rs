//! The login page: a plain form (no script needed), posted to the same path; a failure shows
//! the form again with why (a wrong name or password, or a lockout and for how long).

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, html};
use serde::Deserialize;

use super::auth::{self, Caller, ClientAddr, Login};
use super::{ApiError, Console};

fn login_page(error: Option<&str>, status: StatusCode) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Log in · quicdesk rendezvous" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                form class="login" method="post" action="/login" {
                    h1 { "quicdesk rendezvous" }
                    @if let Some(e) = error { p class="bad" id="login-error" { (e) } }
                    label { "User " input name="user" id="user" required autocomplete="username"; }
                    label { "Password " input name="password" id="password" type="password" required autocomplete="current-password"; }
                    label { "TOTP code (if you set one up) " input name="totp" id="totp" autocomplete="one-time-code" inputmode="numeric"; }
                    button id="login" { "Log in" }
                }
            }
        }
    };
    (status, Html(body.into_string())).into_response()
}

pub(super) async fn form(caller: Result<Caller, ApiError>) -> Response {
    match caller {
        Ok(_) => Redirect::to("/").into_response(),
        Err(_) => login_page(None, StatusCode::OK),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    user: String,
    password: String,
    #[serde(default)]
    totp: String,
}

pub(super) async fn submit(
    State(console): State<Arc<Console>>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let login = Login {
        user: f.user,
        password: f.password,
        totp: Some(f.totp).filter(|t| !t.is_empty()),
    };
    match auth::log_in(&console, from, &headers, login).await {
        Ok(done) => ([(header::SET_COOKIE, done.cookie)], Redirect::to("/")).into_response(),
        Err(ApiError::Locked(secs)) => login_page(
            Some(&format!("Too many failed logins: try again in {secs} s.")),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(ApiError::WrongLogin) => login_page(
            Some("wrong user name or password"),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => e.into_response(),
    }
}
