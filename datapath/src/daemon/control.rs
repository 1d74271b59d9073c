//! The control socket: a unix stream socket speaking JSON lines. Each
//! request is one JSON object on one line (`{"cmd":"ports"}`), each reply one
//! JSON object on one line: `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
//!
//! Commands: `ports`, `macs`, `counters`, `metrics` (the counters in
//! Prometheus' text format, see [`crate::metrics`]), `conntrack` (optional `"port"` name,
//! `"zone"` local VLAN, `"flush": true`), `reload`, `trace` (with `"frame"`: a frame
//! description such as `in_port=tap1 dl_src=... dl_dst=...`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

/// Answers one control request (a parsed JSON object) with a JSON reply.
pub type Handler = dyn Fn(&Value) -> Value + Send + Sync;

/// A running control socket server; stops and removes the socket on drop.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket file, creating the parent
    /// directory) and serves requests with `handler`, one thread per client.
    pub fn bind(path: &Path, handler: Arc<Handler>) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        if path.exists() {
            // A live switch on this path answers; only a stale file is replaced.
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "control socket {} is in use by a running switch",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weft-control".into())
            .spawn(move || accept_loop(listener, handler, stop2))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, handler: Arc<Handler>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let h = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("weft-control-client".into())
                    .spawn(move || serve_client(stream, h));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn serve_client(stream: UnixStream, handler: Arc<Handler>) {
    let _ = stream.set_nonblocking(false);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Ok(req) if req.is_object() => handler(&req),
            Ok(_) => error_reply("request must be a JSON object"),
            Err(e) => error_reply(&format!("bad JSON: {e}")),
        };
        let mut text = reply.to_string();
        text.push('\n');
        if out.write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}

/// `{"ok":false,"error":msg}`.
pub fn error_reply(msg: &str) -> Value {
    json!({"ok": false, "error": msg})
}

/// Sends one request to the switch at `path` and returns its reply.
pub fn request(path: &Path, req: &Value) -> io::Result<Value> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to {}: {e}", path.display()),
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut text = req.to_string();
    text.push('\n');
    s.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    serde_json::from_str(&line)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {e}")))
}
