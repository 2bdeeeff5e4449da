//! The one integration test crate (one link of the binary, not one per file).

mod accounts;
mod cli;
mod config;
mod fakes;
mod harness;
mod http;
mod integrations;
mod mcp;
mod mcp_everything;
mod orchestrator;
mod perimeter;
mod storage;
mod task_master;
