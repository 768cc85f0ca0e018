//! The rendezvous machine's services, simulated: the STUN responder and the relay (the same
//! rules as `rendezvous::relay::Relay`: proven binds, data only between proven addresses with
//! the receiver's token, a rebind notice to data from elsewhere, a little held for an unbound
//! side).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pathagent::wire::{self, RelayFrame, Ticket};

/// Answers Binding requests (never with more bytes than the request).
pub fn stun_answer(bytes: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    wire::binding_answer(bytes, from).ok().flatten()
}

#[derive(Debug)]
struct Side {
    ticket: Ticket,
    addr: Option<SocketAddr>,
    counter: u64,
    last_notice: Option<Instant>,
}

/// One relayed session.
#[derive(Debug)]
pub struct Relay {
    sides: [Side; 2],
    pending: Vec<(usize, Vec<u8>)>,
    pub forwarded: u64,
    pub rebind_notices: u64,
}

const PENDING_MAX: usize = 8;
const NOTICE_EVERY: Duration = Duration::from_millis(500);

impl Relay {
    pub fn new(tickets: [Ticket; 2]) -> Self {
        let side = |ticket| Side {
            ticket,
            addr: None,
            counter: 0,
            last_notice: None,
        };
        Self {
            sides: tickets.map(side),
            pending: Vec::new(),
            forwarded: 0,
            rebind_notices: 0,
        }
    }

    /// Handles one datagram; returns what to send (to, bytes).
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let Ok(frame) = wire::parse_relay(bytes) else {
            return Vec::new();
        };
        let (token, bind) = match frame {
            RelayFrame::Data { token, .. } => (token, None),
            RelayFrame::Bind {
                token,
                counter,
                mac,
            } => (token, Some((counter, mac))),
            _ => return Vec::new(),
        };
        let Some(side) = self.sides.iter().position(|s| s.ticket.token == token) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some((counter, mac)) = bind {
            let me = &mut self.sides[side];
            if counter <= me.counter || !wire::bind_proven(&me.ticket, counter, &mac) {
                return out;
            }
            me.counter = counter;
            me.addr = Some(from);
            out.push((from, wire::bound_frame(token).to_vec()));
            let mine = me.ticket.token;
            let (ready, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|(to, _)| *to == side);
            self.pending = kept;
            for (_, mut f) in ready {
                f[1..wire::RELAY_HEADER_LEN].copy_from_slice(&mine.0);
                out.push((from, f));
            }
            return out;
        }
        let me = &mut self.sides[side];
        if me.addr != Some(from) {
            if me
                .last_notice
                .is_none_or(|t| now.saturating_duration_since(t) >= NOTICE_EVERY)
            {
                me.last_notice = Some(now);
                self.rebind_notices += 1;
                out.push((from, wire::rebind_frame(token).to_vec()));
            }
            return out;
        }
        let other = &self.sides[1 - side];
        let mut f = bytes.to_vec();
        match other.addr {
            Some(to) => {
                f[1..wire::RELAY_HEADER_LEN].copy_from_slice(&other.ticket.token.0);
                self.forwarded += 1;
                out.push((to, f));
            }
            None if self.pending.len() < PENDING_MAX => self.pending.push((1 - side, f)),
            None => {}
        }
        out
    }
}
