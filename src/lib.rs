//! geobatch: CSV of x/y coordinates -> Excel workbook with converted coordinates, through Kafka.
//!
//! The ground floor is the shared vocabulary: `job` (the domain), `options` (what a user asks),
//! `settings` (what a process is told), `secret`, `backoff`, and the two places the data rests,
//! `store` and `bus`. The stages, one module each, follow the data flow: `intake` reads and
//! splits the input, `convert` transforms points, `lookup` asks address providers, `merge`
//! writes the outputs; `pipeline` wires them as tasks. `http`, `watch` and `metrics` are the
//! front doors and observation, on top.

pub mod backoff;
pub mod bus;
pub mod job;
pub mod options;
pub mod secret;
pub mod settings;
pub mod store;

pub mod convert;
pub mod intake;
pub mod lookup;
pub mod merge;
pub mod pipeline;

pub mod http;
pub mod metrics;
pub mod watch;
