//! One integration-test binary: every file here shares the harness and one link step.

mod fake_geocoder;
mod fake_provider;
mod harness;

mod architecture;
mod broker_loss;
mod compose;
mod convert_cli;
mod crs_reference;
mod data_integrity;
mod db_faults;
mod external_broker;
mod geocode;
mod gis_output;
mod http_api;
mod http_security;
mod isolation;
mod lookup;
mod lookup_jobs;
mod lookup_store;
mod ownership;
mod page;
mod postgis_engine;
mod postgres_store;
mod properties;
mod restart;
mod shutdown;
mod watch_folder;
mod workbook_input;
