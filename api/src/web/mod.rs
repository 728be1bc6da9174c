//! Building blocks of the HTTP side that have no state of their own: download headers,
//! byte ranges, password-guess throttling and the recipient pages.

pub(crate) mod disposition;
pub(crate) mod html;
pub(crate) mod range;
pub(crate) mod throttle;
