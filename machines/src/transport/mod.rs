//! Byte pipes to machines: serial ports (tokio-serial; [`open_serial`] with the options a
//! cutter needs, the printers' and lasers' opened by their drivers), and HTTP for print
//! servers: [`octoprint`] and [`moonraker`].

pub mod moonraker;
pub mod octoprint;

use std::path::Path;
use std::time::Duration;

use crate::driver::remote::RemoteError;

/// How a serial link holds the flow when the machine is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// XON/XOFF bytes from the machine, read and honoured by the protocol itself (the port
    /// is opened without the system's own software flow control, so that the protocol sees
    /// every hold and can time it).
    #[default]
    Software,
    /// RTS/CTS lines: the port holds writes while the machine lowers CTS.
    Hardware,
    /// None: the machine keeps up, or drops bytes.
    None,
}

/// A serial port to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialOptions {
    pub port: String,
    pub baud: u32,
    pub flow: FlowControl,
}

/// Opens a serial port, 8 data bits, no parity, 1 stop bit, with `options`' flow control.
pub fn open_serial(options: &SerialOptions) -> std::io::Result<tokio_serial::SerialStream> {
    use tokio_serial::SerialPortBuilderExt as _;
    let flow = match options.flow {
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        FlowControl::Software | FlowControl::None => tokio_serial::FlowControl::None,
    };
    tokio_serial::new(&options.port, options.baud)
        .data_bits(tokio_serial::DataBits::Eight)
        .parity(tokio_serial::Parity::None)
        .stop_bits(tokio_serial::StopBits::One)
        .flow_control(flow)
        .open_native_async()
        .map_err(std::io::Error::other)
}

/// Plain HTTP on the lab's network; a request that gets no answer in 10 s is an outage.
fn http_client() -> Result<reqwest::Client, RemoteError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| RemoteError::Protocol(e.to_string()))
}

fn unreachable(e: reqwest::Error) -> RemoteError {
    RemoteError::Unreachable(e.to_string())
}

/// A non-2xx answer becomes the server's own words (its JSON `error`, or the start of its
/// body): `Refused` for a 4xx, `NotReady` (like no answer) for a 5xx.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, RemoteError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = &v["error"];
            e["message"]
                .as_str()
                .or_else(|| e.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    if status.is_server_error() {
        return Err(RemoteError::NotReady(format!(
            "{} {message}",
            status.as_u16()
        )));
    }
    Err(RemoteError::Refused {
        status: status.as_u16(),
        message,
    })
}

/// The job file as a multipart part, read as it is sent.
async fn file_part(file: &Path, name: &str) -> Result<reqwest::multipart::Part, RemoteError> {
    let handle = tokio::fs::File::open(file).await?;
    let size = handle.metadata().await?.len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle));
    reqwest::multipart::Part::stream_with_length(body, size)
        .file_name(name.to_string())
        .mime_str("application/octet-stream")
        .map_err(|e| RemoteError::Protocol(e.to_string()))
}

/// The SHA-256 of a file in hex, read in blocks.
async fn sha256_file(file: &Path) -> Result<String, RemoteError> {
    use sha2::Digest;
    use tokio::io::AsyncReadExt;
    let mut handle = tokio::fs::File::open(file).await?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = handle.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A file name as one URL path segment or query value (RFC 3986 unreserved kept).
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
