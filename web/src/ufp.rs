//! Cura's Ultimaker Format Package (`.ufp`): a zip holding the G-code (`3D/model.gcode`),
//! a picture (`Metadata/thumbnail.png`) and their descriptions. Cura sends one to an
//! OctoPrint that says it has the UltimakerFormatPackage plugin; the job is the G-code
//! inside, and the picture becomes the job's thumbnail.

use fabrique_controller::job_files;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What a package held: the G-code, written beside it, and its size and SHA-256.
#[derive(Debug)]
pub struct Unpacked {
    pub stored_name: String,
    pub size_bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UfpError {
    /// Not a zip, or no G-code in it.
    #[error("not a package with G-code")]
    Broken,
    /// The G-code inside is larger than a job may be.
    #[error("the G-code is too large")]
    TooLarge,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const GCODE: &str = "3D/model.gcode";
const THUMBNAIL: &str = "Metadata/thumbnail.png";
/// A picture is small; a larger one is left out.
const MAX_THUMBNAIL_BYTES: u64 = 4 * 1_048_576;

/// The name of an entry, without the leading `/` some writers put.
fn entry_name(name: &str) -> &str {
    name.trim_start_matches('/')
}

/// Unpacks the package at `path` into `dir` as `{stem}.gcode` (`stem` a fresh name), read
/// and written piece by piece: a package's G-code is as large as any other. At most
/// `max_bytes` of G-code are written (a small zip can hold a huge file). The thumbnail goes
/// where the job's thumbnail is kept. Nothing is left behind on error. Blocking.
pub fn unpack(path: &Path, dir: &Path, stem: &str, max_bytes: u64) -> Result<Unpacked, UfpError> {
    let stored_name = format!("{stem}.gcode");
    let partial = dir.join(format!("{stored_name}.part"));
    let result = write_gcode(path, &partial, max_bytes);
    match result {
        Ok((size_bytes, sha256, thumbnail)) => {
            std::fs::rename(&partial, dir.join(&stored_name))?;
            if let Some(png) = thumbnail
                && let Err(e) = std::fs::write(job_files::thumbnail_path(dir, &stored_name), png)
            {
                tracing::warn!(error = %e, "could not keep a package's picture");
            }
            Ok(Unpacked {
                stored_name,
                size_bytes,
                sha256,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn write_gcode(
    path: &Path,
    partial: &PathBuf,
    max_bytes: u64,
) -> Result<(u64, String, Option<Vec<u8>>), UfpError> {
    let file = std::fs::File::open(path)?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|_| UfpError::Broken)?;
    let names: Vec<String> = archive
        .file_names()
        .map(|name| name.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|_| UfpError::Broken)?;
    let find = |wanted: &str| names.iter().find(|n| entry_name(n) == wanted).cloned();
    let gcode = find(GCODE)
        // A package from another writer: its one G-code file.
        .or_else(|| {
            let mut gcodes = names
                .iter()
                .filter(|n| entry_name(n).to_ascii_lowercase().ends_with(".gcode"));
            match (gcodes.next(), gcodes.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        })
        .ok_or(UfpError::Broken)?;

    let mut out = std::io::BufWriter::new(std::fs::File::create(partial)?);
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    {
        let mut entry = archive.by_name(&gcode).map_err(|_| UfpError::Broken)?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A corrupt stream or a wrong checksum.
                Err(_) => return Err(UfpError::Broken),
            };
            size += n as u64;
            if size > max_bytes {
                return Err(UfpError::TooLarge);
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n])?;
        }
    }
    out.flush()?;
    if size == 0 {
        return Err(UfpError::Broken);
    }
    let thumbnail = find(THUMBNAIL).and_then(|name| {
        let entry = archive.by_name(&name).ok()?;
        if entry.size() > MAX_THUMBNAIL_BYTES {
            return None;
        }
        let mut png = Vec::new();
        entry.take(MAX_THUMBNAIL_BYTES).read_to_end(&mut png).ok()?;
        png.starts_with(b"\x89PNG").then_some(png)
    });
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, sha256, thumbnail))
}
