//! The app of the benchmark's `scheduler` and `actions` scenarios (bench/src/scenarios/):
//!
//! - `scheduler:schedule` schedules jobs of `scheduler:record` at given due times; each job
//!   records its due time and the time its mutation's transaction began, so the bench reads
//!   the scheduler's lag back with `scheduler:lags`;
//! - `outside:fetch_once` makes one outbound HTTP request (to a server of the bench's own on
//!   loopback).

pub mod outside;
pub mod scheduler;
