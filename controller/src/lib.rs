//! The lab's rules, its store and the machine runtime.
//!
//! # Layout
//!
//! - [`domain`]: pure types and rules (members, roles, machines and their states). Values are
//!   parsed at the boundary and trusted afterwards.
//! - [`store`]: all SQL, written once for SQLite and PostgreSQL, named for the use case.
//! - [`lab`]: the use cases with their permission rules; what the web layer calls
//!   ([`bookings`], [`jobs`] and [`campaigns`] add theirs).
//! - [`domain::fit`]: the one rule that says whether a job may run on a machine; the
//!   planner, the runtime, the board and the API all ask it.
//! - [`job_files`]: a job's file read for the machine it is sent to, and its pictures.
//! - [`scheduler`]: the pure planner; [`runtime`]: one task per machine.
//! - [`secrets`]: argon2id hashing and random tokens.
//! - [`badge_keys`]: the keys that sign badges, and VC-JWTs.

pub mod backup;
pub mod badge_keys;
pub mod bookings;
pub mod campaigns;
pub mod domain;
pub mod ical;
pub mod job_files;
pub mod jobs;
pub mod lab;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod store;
#[doc(hidden)]
pub mod testing;

pub use lab::{Lab, LabError, LabResult};
pub use store::{Backend, Store, StoreError};
