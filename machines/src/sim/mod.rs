//! Virtual machines on a pseudo-terminal, with fault injection.

pub mod cutter;
pub mod grbl;
pub mod marlin;
pub mod octoprint;
