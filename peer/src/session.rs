//! The peer's side of `proto::session`: reading control messages (with a deadline during
//! authentication, apart from the loop that acts on them afterwards), the wall clock the
//! latency measurement uses, and the input limit (`input`'s encoding).

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

/// A running session's control messages, read apart from the loop that acts on them (a read is
/// not cancel-safe, and that loop waits on other things too): the reading future, which the
/// loop polls alongside and which ends with the stream (or its error), and the messages, taken
/// one at a time. At most a few wait: while the loop's answer waits for the other side to read
/// it, nothing more is read from that side.
pub(crate) fn control_inbox(
    recv: &mut quinn::RecvStream,
) -> (
    impl std::future::Future<Output = Result<(), crate::Error>> + '_,
    tokio::sync::mpsc::Receiver<proto::session::ControlMsg>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let reading = async move {
        while let Some(msg) = proto::wire::read_msg::<proto::session::ControlMsg, _>(
            recv,
            proto::session::MAX_CONTROL_LEN,
        )
        .await?
        {
            if tx.send(msg).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    (reading, rx)
}

/// Microseconds since the Unix epoch on this machine's clock.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
