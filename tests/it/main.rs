//! One integration-test binary: every file here shares the harness and one link step.

mod fake_provider;
mod harness;

mod convert_cli;
mod crs_reference;
mod http_api;
mod lookup;
mod restart;
mod watch_folder;
