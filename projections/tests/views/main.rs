//! The persisted views over real RocksDB stores in temporary directories, fed from
//! ledgers of the workload generator.

mod audit;
mod billing;
mod common;
mod rebuild;
mod schedule;
mod status;
mod tracking;
