//! The operator's handle on a running server ([`Admin`]): what the console and the HTTP API
//! read and change, each call one short turn of the core's lock (the store written before it
//! is released, as for every request). Closing a banned or forgotten host's registration is
//! dropping its push channel, which ends its stream.

use std::sync::Arc;

use proto::AccessCode;

use super::State;
use crate::core::{
    AccessMode, AdminError, Event, HostPage, HostQuery, HostView, Now, SessionRecord, Snapshot,
    Token, lock,
};
use crate::relay::SessionView;

/// Ends the registration `push` names, if any: dropping its push channel ends its stream.
fn end_registration(s: &mut super::Shared, push: Option<crate::core::PushId>) {
    if let Some(push) = push {
        s.pushes.remove(&push);
    }
}

/// The console's handle on a running server (`Server::admin`).
#[derive(Clone)]
pub struct Admin(pub(super) Arc<State>);

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    /// A page of hosts, the addresses of those online as their connections have them now.
    pub fn hosts(&self, q: &HostQuery) -> HostPage {
        self.0.with(|s| {
            let page = s.core.hosts_page(q);
            let online: Vec<AccessCode> = page
                .hosts
                .iter()
                .filter(|h| h.online.is_some())
                .map(|h| h.code)
                .collect();
            let mut moved = false;
            for code in online {
                moved |= s.follow_move(code);
            }
            if moved { s.core.hosts_page(q) } else { page }
        })
    }

    /// Host `code`, its address (if online) as its connection has it now.
    pub fn host(&self, code: &AccessCode) -> Option<HostView> {
        self.0.with(|s| {
            s.follow_move(*code);
            s.core.host(code)
        })
    }

    /// The counts alone (no host rows).
    pub fn counts(&self) -> Snapshot {
        lock(&self.0.shared).core.counts()
    }

    pub fn rename(&self, code: &AccessCode, name: Option<String>) -> Result<(), AdminError> {
        self.0.with(|s| s.core.rename(code, name))
    }

    /// Bans (taking the host offline) or unbans host `code`'s key.
    pub fn set_banned(&self, code: &AccessCode, banned: bool) -> Result<(), AdminError> {
        self.0.with(|s| {
            let push = s.core.set_banned(Now::system(), code, banned)?;
            end_registration(s, push);
            Ok(())
        })
    }

    /// Forgets host `code` (its code is quarantined; a running host registers again).
    pub fn forget(&self, code: &AccessCode) -> Result<(), AdminError> {
        self.0.with(|s| {
            let push = s.core.forget(Now::system(), code)?;
            end_registration(s, push);
            Ok(())
        })
    }

    /// The live relayed sessions, newest first.
    pub fn live_sessions(&self) -> Vec<(SessionRecord, SessionView)> {
        self.0.with(|s| s.core.live_sessions(Now::system()))
    }

    /// Ends a live session (its relay session closes at once); whether it was live.
    pub fn end_session(&self, id: &str) -> bool {
        self.0.with(|s| s.core.end_session(Now::system(), id))
    }

    /// Issues an enrollment token.
    pub fn add_token(&self, token: Token) {
        self.0.with(|s| s.core.add_token(token));
    }

    /// Revokes a token; whether it was live.
    pub fn revoke_token(&self, id: &str) -> bool {
        self.0.with(|s| s.core.revoke_token(id))
    }

    /// Every enrollment token, newest first.
    pub fn tokens(&self) -> Vec<Token> {
        lock(&self.0.shared).core.tokens()
    }

    /// The access mode.
    pub fn access_mode(&self) -> AccessMode {
        lock(&self.0.shared).core.access_mode()
    }

    /// Events from now on (a receiver that falls more than the backlog behind is told it lagged).
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.0.events.subscribe()
    }
}
