//! Waits, timers and approvals.
