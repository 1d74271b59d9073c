//! The HTTP shell for image data: `PUT /v2/images/{id}/file` streams the
//! body through the pipeline (writer + hash threads) into the store;
//! `GET` streams it back as mapped windows of the file. Neither holds an
//! image in memory: at most a few MiB per transfer are in flight.
//!
//! An upload is three commits around the bytes: `begin_upload` (queued ->
//! saving), the data staged, committed to the store, then `finish_upload`
//! (saving -> active), or `abort_upload` (back to queued, staged data
//! dropped) when anything fails, the client hanging up included. The work
//! after `begin_upload` runs in its own task, so a client that goes away
//! cannot stop the cleanup halfway.

use super::api::{Caller, S};
use super::error::{ImageError, ImageResult};
use super::model::{Data, Status};
use super::pipeline::{qcow2_virtual_size, Pipeline, CHUNK};
use super::range;
use super::service;
use super::store::Stored;
use super::upload::{self, UploadPlan};
use super::Images;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;

/// Runs blocking store work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> ImageResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| ImageError::Io(e.to_string())),
        Err(e) => Err(ImageError::Internal(format!("store task failed: {e}"))),
    }
}

/// `PUT /v2/images/{id}/file`.
pub async fn upload_h(
    State(im): S,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if ct != "application/octet-stream" {
        return Err(ImageError::UnsupportedMedia(format!(
            "Unsupported Content-Type '{ct}': image data is application/octet-stream"
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    upload_body(im, c, id, declared, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An upload of `body` into queued image `id` for `ctx`: what `PUT
/// .../file` does, and what a server snapshot does with its disk.
pub async fn upload_body(
    im: Arc<Images>,
    ctx: super::Ctx,
    id: String,
    declared: Option<u64>,
    body: Body,
) -> ImageResult<()> {
    let target = id.clone();
    let plan = im
        .write_async(move |st, env| upload::begin_upload(st, env, &ctx, &target, declared))
        .await?;
    match tokio::spawn(receive(im, id, plan, body)).await {
        Ok(r) => r,
        Err(e) => Err(ImageError::Internal(format!("upload task failed: {e}"))),
    }
}

/// [`upload_body`] of a local file, read in [`CHUNK`]s.
pub async fn upload_file(
    im: Arc<Images>,
    ctx: super::Ctx,
    id: String,
    path: std::path::PathBuf,
) -> ImageResult<()> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ImageError::Io(format!("{}: {e}", path.display())))?;
    let len = file.metadata().await.ok().map(|m| m.len());
    let chunks = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    upload_body(im, ctx, id, len, Body::from_stream(chunks)).await
}

/// Everything after `begin_upload`: stream, hash, store, finish; or undo.
async fn receive(im: Arc<Images>, id: String, plan: UploadPlan, body: Body) -> ImageResult<()> {
    let outcome = stream_and_store(&im, &id, &plan, body).await;
    let failed = match outcome {
        Ok(data) => {
            let (target, up) = (id.clone(), plan.upload.clone());
            match im
                .write_async(move |st, env| {
                    upload::finish_upload(st, env, &target, &up, data.clone())
                })
                .await
            {
                Ok(img) => {
                    tracing::info!(image = %id, size = img.data.as_ref().map(|d| d.size), "image uploaded");
                    return Ok(());
                }
                Err(e) => {
                    // The data is in place but the image will not have it.
                    let (store, target) = (im.data_store(), id.clone());
                    if let Err(de) = blocking(move || store.delete(&target)).await {
                        tracing::warn!(image = %id, error = %de, "uploaded data not removed");
                    }
                    e
                }
            }
        }
        Err(e) => e,
    };
    let (target, up) = (id.clone(), plan.upload.clone());
    if let Err(ae) = im
        .write_async(move |st, env| upload::abort_upload(st, env, &target, &up))
        .await
    {
        tracing::error!(image = %id, error = %ae, "cut-off upload not set back to queued");
    }
    tracing::info!(image = %id, error = %failed, "image upload failed: back to queued");
    Err(failed)
}

/// Streams the body through the pipeline into a staged file, commits it to
/// the store, and returns what the data turned out to be.
async fn stream_and_store(
    im: &Arc<Images>,
    id: &str,
    plan: &UploadPlan,
    body: Body,
) -> ImageResult<Data> {
    let store = im.data_store();
    let target = id.to_string();
    let staged = blocking(move || store.stage(&target)).await?;
    let mut pipe = Pipeline::start(staged);
    if let Err(e) = feed(&mut pipe, plan, im.limits().image_size_cap, body).await {
        pipe.abort().await;
        return Err(e);
    }
    let (staged, d) = pipe.finish().await?;
    blocking(move || staged.commit()).await?;
    let disk_format = im.read(|st| st.images.get(id).and_then(|i| i.disk_format.clone()));
    let virtual_size = match disk_format.as_deref() {
        Some("raw") => Some(d.size),
        _ => qcow2_virtual_size(&d.head),
    };
    Ok(Data {
        size: d.size,
        virtual_size,
        checksum: d.md5,
        sha512: d.sha512,
        stored_by: None, // the record's uploader, set by finish_upload
    })
}

/// Reads the body into the pipeline (which cuts it into [`CHUNK`]s), and
/// stops at the plan's limit.
async fn feed(pipe: &mut Pipeline, plan: &UploadPlan, cap: u64, mut body: Body) -> ImageResult<()> {
    loop {
        let frame = match body.frame().await {
            None => return Ok(()),
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(ImageError::CutOff(e.to_string())),
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let received = pipe.size() + chunk.len() as u64;
        if received > plan.limit {
            return Err(upload::over_limit(plan, cap, received));
        }
        pipe.push(&chunk).await?;
    }
}

/// The window of the file one download chunk maps: big enough that the
/// mmap/munmap per chunk is noise, small enough that the windows in flight
/// (the channel's depth, one being made, one hyper writes) stay a few MiB
/// of the server's RSS.
const WINDOW: usize = 2 << 20;
/// Windows queued between the mapping thread and the response body.
const WINDOWS_QUEUED: usize = 2;

/// `GET /v2/images/{id}/file`: the data, with `Content-MD5` (the hex
/// checksum, as Glance sends it) and `Content-Length`; 204 while the image
/// has none. A `Range` of one span is a 206 with `Content-Range` (Glance's
/// rules, [`super::range`]). The body is windows of the mapped file, which
/// `weft serve`'s connections send with sendfile ([`super::zerocopy`]): the
/// bytes go from the page cache to the socket with no copy on the way.
pub async fn download_h(
    State(im): S,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ImageResult<Response> {
    let c = caller.ctx(&im)?;
    let img = im.read_env(|st, env| {
        let i = service::get_image(st, &c, &id)?;
        env.authz
            .check(&c, "download_image", &service::target(st, &c, i))?;
        Ok::<_, ImageError>(i.clone())
    })?;
    if img.status == Status::Deactivated && !c.is_admin {
        return Err(ImageError::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ));
    }
    let Some(data) = img.data.filter(|_| img.status != Status::Saving) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let span = match headers.get(header::RANGE) {
        Some(v) => Some(range::parse(v.to_str().unwrap_or(""), data.size)?),
        None => None,
    };
    let store = im.data_store();
    let target = id.clone();
    let Some(stored) = blocking(move || store.open(&target)).await? else {
        return Err(missing(&im, &id, &data));
    };
    if stored.len() != data.size {
        return Err(ImageError::Io(format!(
            "the data of image {id} is {} bytes, the record says {}",
            stored.len(),
            data.size
        )));
    }
    let (start, len) = span.map_or((0, data.size), |s| (s.start, s.len()));
    let mut resp = Body::from_stream(windows(stored, start, len)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(s) = span {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&s.content_range(data.size)) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&data.checksum) {
        resp.headers_mut().insert("content-md5", v);
    }
    Ok(resp)
}

/// The answer when this replica's store lacks an active image's data: 503
/// naming the replica that received it when that is another one (the
/// replicas do not share an image directory); data this replica itself
/// stored and lost is a server fault.
fn missing(im: &Images, id: &str, data: &Data) -> ImageError {
    match data.stored_by.as_deref() {
        Some(r) if r != im.replica_id() => ImageError::Unavailable(format!(
            "The data of image {id} is held by another API replica ({r}), not by this one's \
             image store ({}). Replicas serve each other's image data only from a shared \
             --image-dir.",
            im.data_store().describe()
        )),
        _ => ImageError::Io(format!("the data of image {id} is missing")),
    }
}

/// `len` bytes from `start` of `stored`, as a stream of mapped windows. A
/// blocking thread maps them (a window not in the page cache is read from
/// disk there) into a small bounded channel; a slow client stops the
/// mapping, so at most a few windows are ever resident.
fn windows(
    stored: Box<dyn Stored>,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(WINDOWS_QUEUED);
    tokio::task::spawn_blocking(move || {
        let end = start + len;
        let mut at = start;
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(WINDOW).min(WINDOW);
            let chunk = match stored.chunk(at, want) {
                Ok(c) if c.is_empty() => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "image data shorter than its record",
                )),
                r => r,
            };
            let failed = chunk.is_err();
            at += chunk.as_ref().map_or(0, |c| c.len() as u64);
            if tx.blocking_send(chunk).is_err() || failed {
                return; // the client went away, or the read failed
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
