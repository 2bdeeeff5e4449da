//! The one integration test crate (one link of the binary, not one per file).

mod accounts;
mod cli;
mod config;
mod harness;
mod http;
mod perimeter;
mod storage;
