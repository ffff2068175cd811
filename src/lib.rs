//! geobatch: CSV of x/y coordinates -> Excel workbook with converted coordinates, through Kafka.
//!
//! The modules follow the data flow: `intake` reads and splits uploads, `bus` moves row batches
//! through Kafka, `convert` turns points into results, `store` keeps jobs and results, `merge`
//! writes the workbook; `pipeline` wires them together, `http` and `watch` are the front doors.

pub mod bus;
pub mod convert;
pub mod http;
pub mod intake;
pub mod lookup;
pub mod merge;
pub mod metrics;
pub mod pipeline;
pub mod store;
pub mod watch;
