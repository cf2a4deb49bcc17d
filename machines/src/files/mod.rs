//! Job files: what Fabrique reads in them before a job is scheduled.
//!
//! - [`gcode`]: G-code for printers, lasers and mills, read in one pass in constant memory:
//!   our own time estimate from a motion model, material, size, layers, slicer metadata and
//!   thumbnails, an SVG preview, and checks against a machine with messages in French and
//!   English.
//! - [`embroidery`]: DST, PES/PEC, EXP and JEF designs: stitches, jumps, trims, colour
//!   changes and threads, size and hoop fit, sewing time, an SVG preview; DST writing.

pub mod embroidery;
pub mod gcode;
