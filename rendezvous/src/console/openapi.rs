//! The API's OpenAPI 3.1 document, served at `/api/openapi.json` (public: it says what the API
//! is, not what the registry holds). Written by hand next to the handlers in `api`; the
//! console's tests check every path it names answers as documented, and the schema tests
//! (schemathesis, `cargo xtask`) drive the server from it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use super::Console;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route(
        "/api/openapi.json",
        get(|| async { axum::Json(document()) }),
    )
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn errors() -> Value {
    let e = json!({ "$ref": "#/components/schemas/Error" });
    json!({
        "400": ok("bad request", e.clone()),
        "401": ok("not logged in, or a bad key", e.clone()),
        "403": ok("the role or scope does not allow this, or a CSRF/origin failure", e.clone()),
        "404": ok("no such thing", e),
    })
}

fn with_errors(mut responses: Value) -> Value {
    if let (Some(r), Value::Object(e)) = (responses.as_object_mut(), errors()) {
        for (k, v) in e {
            r.entry(k).or_insert(v);
        }
    }
    responses
}

fn code_param() -> Value {
    json!({ "name": "code", "in": "path", "required": true,
            "schema": { "type": "string", "pattern": "^ISR-[0-9]{8}$" } })
}

fn body(schema: Value) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema } } })
}

/// The document.
pub fn document() -> Value {
    let host = json!({ "$ref": "#/components/schemas/Host" });
    let host_page = json!({ "type": "object", "required": ["hosts", "total", "next"], "properties": {
        "hosts": { "type": "array", "items": host.clone() },
        "total": { "type": "integer", "minimum": 0 },
        "next": { "type": ["string", "null"] } } });
    let isr_entry = json!({ "type": "object", "required": ["id", "fingerprint", "online", "last_seen"],
        "properties": {
            "id": { "type": "string" }, "name": { "type": ["string", "null"] },
            "fingerprint": { "type": "string" }, "online": { "type": "boolean" },
            "last_seen": { "type": "integer" } } });
    let hosts_params = json!([
        { "name": "search", "in": "query", "schema": { "type": "string" } },
        { "name": "online", "in": "query", "schema": { "type": "boolean" } },
        { "name": "after", "in": "query", "schema": { "type": "string", "pattern": "^ISR-[0-9]{8}$" } },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500 } },
    ]);
    let empty = json!({ "description": "done" });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "quicdesk rendezvous console API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Log in with POST /api/v1/login (a cookie session: send its csrf token as X-CSRF-Token on every change) or use an API key as `Authorization: Bearer qdk_…`. Host registration and look-up are not here: they are on QUIC, where the host's address is observed and its key proven."
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": "__Host-qd_session" },
                "apiKey": { "type": "http", "scheme": "bearer" }
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "Host": { "type": "object",
                    "required": ["code", "key", "online", "last_seen", "banned", "name", "address", "online_since", "version", "nat_mapping"],
                    "properties": {
                        "code": { "type": "string" }, "name": { "type": ["string", "null"] },
                        "key": { "type": "string", "pattern": "^[0-9a-f]{64}$" },
                        "online": { "type": "boolean" }, "address": { "type": ["string", "null"] },
                        "online_since": { "type": ["integer", "null"] }, "last_seen": { "type": "integer" },
                        "banned": { "type": "boolean" }, "version": { "type": ["string", "null"] },
                        "nat_mapping": { "enum": ["endpoint-independent", "endpoint-dependent", "unknown", null] } } },
                "Session": { "type": "object",
                    "required": ["id", "code", "host_key", "controller_key", "controller_address", "path", "started", "ended", "bytes", "end_reason", "live", "idle_s"],
                    "properties": {
                        "id": { "type": "string" }, "code": { "type": "string" },
                        "host_key": { "type": "string" }, "controller_key": { "type": "string" },
                        "controller_address": { "type": "string" }, "path": { "enum": ["relay", "direct"] },
                        "started": { "type": "integer" }, "ended": { "type": ["integer", "null"] },
                        "bytes": { "type": "integer" }, "end_reason": { "type": ["string", "null"] },
                        "live": { "type": "boolean" }, "idle_s": { "type": ["integer", "null"] } } },
                "AuditRecord": { "type": "object", "required": ["id", "at", "actor", "action", "target", "detail"],
                    "properties": { "id": { "type": "integer" }, "at": { "type": "integer" },
                        "actor": { "type": "string" }, "action": { "type": "string" },
                        "target": { "type": "string" }, "detail": { "type": "string" } } }
            }
        },
        "security": [ { "session": [] }, { "apiKey": [] } ],
        "paths": {
            "/api/v1/login": { "post": {
                "security": [],
                "summary": "Log in (10 failures a minute per source or user lock out, growing)",
                "requestBody": body(json!({ "type": "object", "required": ["user", "password"], "properties": {
                    "user": { "type": "string" }, "password": { "type": "string" },
                    "totp": { "type": ["string", "null"] } } })),
                "responses": with_errors(json!({
                    "200": ok("logged in; the session cookie is set", json!({ "type": "object",
                        "required": ["user", "role", "csrf"], "properties": {
                        "user": { "type": "string" }, "role": { "type": "string" }, "csrf": { "type": "string" } } })),
                    "429": ok("locked out for a while", json!({ "$ref": "#/components/schemas/Error" })) })) } },
            "/api/v1/logout": { "post": { "summary": "End this session",
                "responses": with_errors(json!({ "200": ok("logged out", json!({ "type": "object" })) })) } },
            "/api/v1/me": { "get": { "summary": "Who is calling",
                "responses": with_errors(json!({ "200": ok("the caller", json!({ "type": "object",
                    "required": ["user", "role", "scope"], "properties": {
                    "user": { "type": "string" }, "role": { "enum": ["admin", "operator", "auditor"] },
                    "scope": { "enum": ["read", "write"] }, "csrf": { "type": ["string", "null"] } } })) })) } },
            "/api/v1/stats": { "get": { "summary": "The dashboard's counts",
                "responses": with_errors(json!({ "200": ok("counts", json!({ "type": "object" })) })) } },
            "/api/v1/hosts": { "get": { "summary": "A page of hosts by code",
                "parameters": hosts_params.clone(),
                "responses": with_errors(json!({ "200": ok("a page", host_page.clone()) })) } },
            "/api/v1/hosts/{code}": {
                "parameters": [code_param()],
                "get": { "summary": "One host", "responses": with_errors(json!({ "200": ok("the host", host.clone()) })) },
                "patch": { "summary": "Rename (operator)",
                    "requestBody": body(json!({ "type": "object", "properties": { "name": { "type": ["string", "null"], "maxLength": 64,
                        "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$" } } })),
                    "responses": with_errors(json!({ "200": ok("the host", host.clone()) })) },
                "delete": { "summary": "Forget (operator): its code is quarantined",
                    "responses": with_errors(json!({ "204": empty.clone() })) } },
            "/api/v1/hosts/{code}/ban": { "parameters": [code_param()], "post": { "summary": "Ban its key (operator)",
                "responses": with_errors(json!({ "200": ok("the host", host.clone()) })) } },
            "/api/v1/hosts/{code}/unban": { "parameters": [code_param()], "post": { "summary": "Unban its key (operator)",
                "responses": with_errors(json!({ "200": ok("the host", host.clone()) })) } },
            "/api/v1/audit": { "get": { "summary": "The audit log, newest first",
                "parameters": [
                    { "name": "before", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 9007199254740991u64 } },
                    { "name": "search", "in": "query", "schema": { "type": "string" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500 } } ],
                "responses": with_errors(json!({ "200": ok("records", json!({ "type": "object", "required": ["records", "next"],
                    "properties": { "records": { "type": "array", "items": { "$ref": "#/components/schemas/AuditRecord" } },
                    "next": { "type": ["integer", "null"] } } })) })) } },
            "/api/v1/users": {
                "get": { "summary": "Users", "responses": with_errors(json!({ "200": ok("users", json!({ "type": "object" })) })) },
                "post": { "summary": "Add a user (admin)",
                    "requestBody": body(json!({ "type": "object", "required": ["name", "role", "password"], "properties": {
                        "name": { "type": "string", "pattern": "^[a-z][a-z0-9._-]{0,31}$" },
                        "role": { "enum": ["admin", "operator", "auditor"] },
                        "password": { "type": "string", "minLength": 12,
                            "description": "12 or more characters and about 55 bits by the server's estimate; a weaker one is refused with 400" } } })),
                    "responses": with_errors(json!({ "201": ok("made", json!({ "type": "object" })),
                        "409": ok("the name is taken", json!({ "$ref": "#/components/schemas/Error" })) })) } },
            "/api/v1/users/{name}": { "parameters": [ { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "delete": { "summary": "Remove a user (admin)", "responses": with_errors(json!({ "204": empty.clone() })) } },
            "/api/v1/keys": {
                "get": { "summary": "API keys (an admin sees all)", "responses": with_errors(json!({ "200": ok("keys", json!({ "type": "object" })) })) },
                "post": { "summary": "Make a key for yourself (from a browser session); shown once",
                    "requestBody": body(json!({ "type": "object", "required": ["scope"], "properties": {
                        "scope": { "enum": ["read", "write"] }, "label": { "type": "string" } } })),
                    "responses": with_errors(json!({ "201": ok("the key", json!({ "type": "object", "required": ["id", "key"],
                        "properties": { "id": { "type": "string" }, "key": { "type": "string" } } })) })) } },
            "/api/v1/keys/{id}": { "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "delete": { "summary": "Revoke a key", "responses": with_errors(json!({ "204": empty })) } },
            "/api/v1/sessions": { "get": { "summary": "Live relayed sessions and past sessions (newest first)",
                "parameters": [
                    { "name": "before", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": 9007199254740991u64 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500 } } ],
                "responses": with_errors(json!({ "200": ok("sessions", json!({ "type": "object", "required": ["live", "past", "next"],
                    "properties": { "live": { "type": "array", "items": { "$ref": "#/components/schemas/Session" } },
                    "past": { "type": "array", "items": { "$ref": "#/components/schemas/Session" } },
                    "next": { "type": ["integer", "null"] } } })) })) } },
            "/api/v1/sessions/{id}": { "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "delete": { "summary": "End a live relayed session (operator): the relay drops its packets from now on",
                    "responses": with_errors(json!({ "204": { "description": "ended" } })) } },
            "/api/v1/enrollments": {
                "get": { "summary": "The access mode and the enrollment tokens (never their secrets)",
                    "responses": with_errors(json!({ "200": ok("tokens", json!({ "type": "object", "required": ["access", "tokens"],
                        "properties": { "access": { "enum": ["open", "enrolled", "closed"] },
                        "tokens": { "type": "array", "items": { "type": "object",
                            "required": ["id", "account", "label", "uses_left", "expires", "created", "revoked"] } } } })) })) },
                "post": { "summary": "Issue an enrollment token (operator); shown once, with its invite when addresses are given",
                    "requestBody": body(json!({ "type": "object", "properties": {
                        "label": { "type": "string", "maxLength": 64, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$" },
                        "uses": { "type": ["integer", "null"], "minimum": 1, "maximum": 10000 },
                        "expires_in": { "type": ["integer", "null"], "minimum": 60, "maximum": 31622400 },
                        "addresses": { "type": "array", "maxItems": 4, "items": { "type": "string",
                            "pattern": "^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\\[[0-9A-Fa-f:.]+\\]):[1-9][0-9]{0,4}$" } } } })),
                    "responses": with_errors(json!({ "201": ok("the token", json!({ "type": "object", "required": ["id", "token", "invite"],
                        "properties": { "id": { "type": "string" }, "token": { "type": "string" },
                        "invite": { "type": ["string", "null"] } } })) })) } },
            "/api/v1/enrollments/{id}": { "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "delete": { "summary": "Revoke a token (keys enrolled with it stay enrolled)",
                    "responses": with_errors(json!({ "204": { "description": "revoked" } })) } },
            "/api/v1/events": { "get": { "summary": "Live updates (server-sent events: host, forgotten, stats, reload)",
                "responses": with_errors(json!({ "200": { "description": "an event stream", "content": { "text/event-stream": {} } } })) } },
            "/status": { "get": { "security": [], "summary": "ISR-style status: counts only",
                "responses": { "200": ok("status", json!({ "type": "object", "required": ["status", "version", "registered", "online", "uptime"],
                    "properties": { "status": { "type": "string" }, "version": { "type": "string" },
                    "registered": { "type": "integer" }, "online": { "type": "integer" }, "uptime": { "type": "integer" } } })) } } },
            "/info/{code}": { "parameters": [code_param()], "get": { "summary": "ISR-style entry of one host",
                "responses": with_errors(json!({ "200": ok("the entry", isr_entry.clone()) })) } },
            "/list": { "get": { "summary": "ISR-style list of hosts, paged",
                "parameters": hosts_params,
                "responses": with_errors(json!({ "200": ok("entries", json!({ "type": "object", "required": ["hosts", "total", "next"],
                    "properties": { "hosts": { "type": "array", "items": isr_entry }, "total": { "type": "integer" },
                    "next": { "type": ["string", "null"] } } })) })) } },
        }
    })
}
