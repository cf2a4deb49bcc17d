//! Job files: G-code analysis and checks against a machine. (Time estimate, embroidery
//! formats and previews: issue 5, still to come.)

pub mod embroidery;
pub mod gcode;
