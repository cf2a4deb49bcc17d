//! Sans-I/O firmware protocols: bytes in, actions and events out, time passed in.

pub mod grbl;
pub mod hpgl;
pub mod marlin;
