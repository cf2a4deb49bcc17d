//! Job files arriving by multipart upload (the web form, the JSON API, slicers' "send to
//! OctoPrint"): streamed to disk chunk by chunk with a size limit and a SHA-256, never held
//! whole in memory. A partial file is removed when anything goes wrong, so a refused upload
//! leaves nothing behind.

use crate::error::AppError;
use axum::extract::Multipart;
use axum::http::StatusCode;
use fabrique_controller::domain::job::display_file_name;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// File endings Fabrique reads: G-code for printers, lasers and mills; embroidery formats;
/// HP-GL for vinyl cutters. Cura's `.ufp` package arrives as the G-code inside it, an SVG
/// drawing as the HP-GL a cutter follows.
pub const ACCEPTED: &[&str] = &[
    "gcode", "gco", "g", "nc", "ngc", "dst", "pes", "exp", "jef", "plt", "hpgl", "ufp", "svg",
];

#[derive(Debug)]
pub struct Received {
    pub file_name: String,
    pub stored_name: String,
    pub path: PathBuf,
    pub size_bytes: i64,
    pub sha256: String,
    /// The other (text) fields of the form.
    pub fields: HashMap<String, String>,
}

fn bad(status: StatusCode, code: &str, key: &str) -> AppError {
    AppError::new(status, code, key)
}

/// A broken body, or one past the size limit of the route.
fn broken(e: &axum::extract::multipart::MultipartError, max_bytes: u64) -> AppError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            "upload.too_large",
        )
        .arg("mb", max_bytes / 1_048_576)
    } else {
        bad(StatusCode::BAD_REQUEST, "bad_upload", "upload.broken")
    }
}

/// Reads a multipart body whose file is in the field `file`, writing it under `dir`.
pub async fn receive(
    mut multipart: Multipart,
    dir: &Path,
    max_bytes: u64,
) -> Result<Received, AppError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| AppError::internal("jobs dir", &e))?;
    let mut fields = HashMap::new();
    let mut file: Option<(String, String, PathBuf, i64, String)> = None;
    let result = async {
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| broken(&e, max_bytes))?
        {
            let name = field.name().unwrap_or("").to_string();
            if name == "file" && file.is_none() {
                let original = display_file_name(field.file_name().unwrap_or(""))?;
                let extension = original
                    .rsplit_once('.')
                    .map(|(_, e)| e.to_ascii_lowercase())
                    .unwrap_or_default();
                if !ACCEPTED.contains(&extension.as_str()) {
                    return Err(bad(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "file_type",
                        "upload.file_type",
                    )
                    .arg("types", ACCEPTED.join(", ")));
                }
                let token = fabrique_controller::secrets::random_token()
                    .map_err(|e| AppError::internal("token", &e))?;
                let stored = format!("{}.{extension}", &token[..24]);
                let path = dir.join(&stored);
                let partial = dir.join(format!("{stored}.part"));
                // Registered before writing, so the clean-up below removes it on any error.
                file = Some((original, stored, path.clone(), 0, String::new()));
                let mut out = tokio::fs::File::create(&partial)
                    .await
                    .map_err(|e| AppError::internal("upload", &e))?;
                let mut hasher = Sha256::new();
                let mut size: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(|e| broken(&e, max_bytes))? {
                    size += chunk.len() as u64;
                    if size > max_bytes {
                        return Err(bad(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "file_too_large",
                            "upload.too_large",
                        )
                        .arg("mb", max_bytes / 1_048_576));
                    }
                    hasher.update(&chunk);
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| AppError::internal("upload", &e))?;
                }
                out.flush()
                    .await
                    .map_err(|e| AppError::internal("upload", &e))?;
                drop(out);
                if size == 0 {
                    return Err(bad(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "empty_file",
                        "upload.empty",
                    ));
                }
                tokio::fs::rename(&partial, &path)
                    .await
                    .map_err(|e| AppError::internal("upload", &e))?;
                let hash: String = hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if let Some(f) = file.as_mut() {
                    f.3 = i64::try_from(size).unwrap_or(i64::MAX);
                    f.4 = hash;
                }
            } else {
                let text = field.text().await.map_err(|e| broken(&e, max_bytes))?;
                if text.len() > 1024 {
                    return Err(bad(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "error.payload_too_large",
                    ));
                }
                fields.insert(name, text);
            }
        }
        Ok(())
    }
    .await;
    match (result, file) {
        (Ok(()), Some((file_name, stored_name, path, size_bytes, sha256)))
            if !sha256.is_empty() =>
        {
            let received = Received {
                file_name,
                stored_name,
                path,
                size_bytes,
                sha256,
                fields,
            };
            if received.stored_name.ends_with(".ufp") {
                unpacked(received, dir, max_bytes).await
            } else if received.stored_name.ends_with(".svg") {
                converted(received, dir).await
            } else {
                Ok(received)
            }
        }
        (Ok(()), _) => Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "file_missing",
            "upload.missing",
        )),
        (Err(e), file) => {
            if let Some((_, stored, path, ..)) = file {
                let _ = tokio::fs::remove_file(dir.join(format!("{stored}.part"))).await;
                let _ = tokio::fs::remove_file(path).await;
            }
            Err(e)
        }
    }
}

/// An SVG drawing received: the HP-GL a cutter follows becomes the file (`dessin.plt`), the
/// drawing goes. A drawing with text or images is refused, since the cutter would skip them
/// without a word; so is one with nothing to cut.
async fn converted(received: Received, dir: &Path) -> Result<Received, AppError> {
    use fabrique_machines::files::hpgl::svg::{self, SvgError};
    let drawing = received.path.clone();
    let result = tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&drawing).map(|m| m.len()).unwrap_or(0);
        if size > svg::MAX_SVG_BYTES as u64 {
            return Err(SvgError::TooLarge);
        }
        let data = std::fs::read(&drawing).map_err(|e| SvgError::Parse(e.to_string()))?;
        svg::svg_to_hpgl(&data)
    })
    .await
    .map_err(|e| AppError::internal("svg", &e));
    let _ = tokio::fs::remove_file(&received.path).await;
    let drawing = match result? {
        Ok(c) if !c.notes.is_empty() => {
            return Err(bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "svg_left_out",
                "upload.svg_left_out",
            ));
        }
        Ok(c) => c,
        Err(SvgError::TooLarge) => {
            return Err(bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                "upload.too_large",
            )
            .arg("mb", svg::MAX_SVG_BYTES / 1_048_576));
        }
        Err(SvgError::Parse(_)) => {
            return Err(bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "svg_unreadable",
                "upload.svg_unreadable",
            ));
        }
        Err(SvgError::Empty) => {
            return Err(bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "svg_empty",
                "upload.svg_empty",
            ));
        }
    };
    let stored_name = format!("{}.plt", received.stored_name.trim_end_matches(".svg"));
    let path = dir.join(&stored_name);
    tokio::fs::write(&path, drawing.hpgl.as_bytes())
        .await
        .map_err(|e| AppError::internal("svg", &e))?;
    let sha256 = Sha256::digest(drawing.hpgl.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let stem = received
        .file_name
        .rsplit_once('.')
        .map_or(received.file_name.as_str(), |(stem, _)| stem);
    Ok(Received {
        file_name: format!("{stem}.plt"),
        stored_name,
        path,
        size_bytes: i64::try_from(drawing.hpgl.len()).unwrap_or(i64::MAX),
        sha256,
        fields: received.fields,
    })
}

/// A `.ufp` package received: its G-code becomes the file, the package goes.
async fn unpacked(received: Received, dir: &Path, max_bytes: u64) -> Result<Received, AppError> {
    let package = received.path.clone();
    let stem = received.stored_name.trim_end_matches(".ufp").to_string();
    let folder = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        crate::ufp::unpack(&package, &folder, &stem, max_bytes)
    })
    .await
    .map_err(|e| AppError::internal("ufp", &e))?;
    let _ = tokio::fs::remove_file(&received.path).await;
    let unpacked = result.map_err(|e| match e {
        crate::ufp::UfpError::Broken => bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ufp_broken",
            "upload.ufp_broken",
        ),
        crate::ufp::UfpError::TooLarge => bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            "upload.too_large",
        )
        .arg("mb", max_bytes / 1_048_576),
        crate::ufp::UfpError::Io(e) => AppError::internal("ufp", &e),
    })?;
    let stem = received
        .file_name
        .rsplit_once('.')
        .map_or(received.file_name.as_str(), |(stem, _)| stem);
    Ok(Received {
        file_name: format!("{stem}.gcode"),
        path: dir.join(&unpacked.stored_name),
        stored_name: unpacked.stored_name,
        size_bytes: i64::try_from(unpacked.size_bytes).unwrap_or(i64::MAX),
        sha256: unpacked.sha256,
        fields: received.fields,
    })
}
