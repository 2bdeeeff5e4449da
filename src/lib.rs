//! vel_tutor: a self-hosted AI tutoring and agent backend in one binary with SQLite inside.
//! `main.rs` only parses the command line; everything testable lives in this library.

// ApiError is large (fields, headers, detail) but only travels on the error path.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod app;
pub mod auth;
pub mod batch;
pub mod breaker;
pub mod cli;
pub mod config;
pub mod fsutil;
pub mod http;
pub mod integrations;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod orchestrator;
pub mod providers;
pub mod ratelimit;
pub mod rotate;
pub mod storage;
pub mod vault;
