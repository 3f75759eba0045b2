//! The rotation engine of ScaiVault (contract section 6), as pure logic: the schedule of one
//! assigned secret as a state machine driven by an injected time (warnings, due, failure, forced and
//! completed rotations), and the generator of fresh values for `auto_generate`.
//!
//! No I/O here: core stores each state with a conditional update (so replicas never fire an event
//! twice) and turns each [`Fire`] into an event in the same transaction.

mod generator;
mod schedule;

pub use generator::{Charset, Generator, GeneratorError};
pub use schedule::{Assignment, FailReason, Fire, State, Timing};
