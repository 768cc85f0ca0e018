//! The isolated decoder's worker as a program of its own, for this crate's tests and benches
//! (`codec::isolated::IsolatedDecoder::spawn(Command::new(env!("CARGO_BIN_EXE_quicdesk-decoder")))`).
//! It honours the test hooks of `worker_main_with_test_hooks`; an application runs the worker
//! by re-executing itself (`codec::isolated::run_worker_if_requested`), without them.

fn main() {
    codec::isolated::worker_main_with_test_hooks()
}
