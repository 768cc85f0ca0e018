//! The sans-IO path agent (issue #12, step 2): being written.
#![forbid(unsafe_code)]
