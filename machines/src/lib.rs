//! Talking to fablab machines and reading their files.
//!
//! Nothing here knows about members, bookings or the database: this crate turns bytes from a
//! machine into events, commands into bytes, and job files into analyses.
//!
//! # Layout
//!
//! - [`protocol`]: sans-I/O state machines for each firmware dialect. Bytes in, actions and
//!   events out, `now` passed in; no tokio.
//! - [`transport`]: the byte pipes (serial ports, HTTP to OctoPrint and Moonraker).
//! - [`driver`]: one driver per connection kind, generic over `AsyncRead + AsyncWrite`, that
//!   runs a protocol over a transport.
//! - [`files`]: G-code analysis and time estimates, embroidery formats, HP-GL for vinyl
//!   cutters (and SVG to HP-GL), previews.
//! - `sim` (feature `sim`): virtual Marlin, GRBL and vinyl-cutter machines on a pseudo-terminal, with
//!   fault injection, for tests, benchmarks and the demo.

pub mod driver;
pub mod files;
pub mod protocol;
pub mod transport;

#[cfg(feature = "sim")]
pub mod sim;
