//! The lab's rules, its store and the machine runtime.
//!
//! # Layout
//!
//! - [`domain`]: pure types and rules (members, roles, machines and their states). Values are
//!   parsed at the boundary and trusted afterwards.
//! - [`store`]: all SQL, written once for SQLite and PostgreSQL, named for the use case.
//! - [`lab`]: the use cases with their permission rules; what the web layer calls
//!   ([`bookings`], [`jobs`] and [`campaigns`] add theirs).
//! - [`secrets`]: argon2id hashing and random tokens.

pub mod bookings;
pub mod campaigns;
pub mod domain;
pub mod ical;
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
