//! The peer's side of `proto::session`: reading control messages with a deadline, the
//! wall clock the latency measurement uses, and the input limit (`input`'s encoding).

/// Largest input message.
pub const MAX_INPUT_LEN: usize = input::MAX_EVENT_LEN;

/// Reads one control message during authentication, where silence or a closed stream is an
/// error.
pub(crate) async fn read_control(
    recv: &mut quinn::RecvStream,
    within: std::time::Duration,
) -> Result<proto::session::ControlMsg, crate::Error> {
    let read = proto::wire::read_msg::<proto::session::ControlMsg, _>(
        recv,
        proto::session::MAX_CONTROL_LEN,
    );
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| crate::Error::Timeout("authentication"))??
        .ok_or(crate::Error::Closed("control stream during authentication"))
}

/// Microseconds since the Unix epoch on this machine's clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
