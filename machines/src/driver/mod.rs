//! Drivers: a protocol run over a transport, generic over `AsyncRead + AsyncWrite`.

pub mod grbl;
pub mod hpgl;
pub mod marlin;
pub mod remote;
