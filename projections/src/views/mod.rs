//! The persisted views, one column family each.

pub mod audit;
pub mod billing;
pub mod schedule;
pub mod tracking;

use crate::projection::Projection;

/// Every built-in view: tracking, billing, audit and the scheduler's due list.
pub const ALL_VIEWS: [&dyn Projection; 4] = [
    &tracking::Tracking,
    &billing::Billing,
    &audit::Audit,
    &schedule::Schedule,
];
