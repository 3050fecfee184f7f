//! End-to-end tests: real processes, real files.

mod store_crash;
