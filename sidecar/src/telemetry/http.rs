//! The HTTP client of OTLP/HTTP export: our reqwest client, run on the
//! daemon's tokio runtime whichever thread asks (the SDK's metric reader
//! exports from its own thread, where a tokio-bound client cannot run).

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// Largest collector response read.
const MAX_RESPONSE: usize = 4 << 20;

/// reqwest on a runtime handle.
#[derive(Debug, Clone)]
pub struct RuntimeClient {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
    headers: ::http::HeaderMap,
}

impl RuntimeClient {
    /// A client whose requests run on `handle`, with `headers` set on each
    /// (replacing same-named ones the exporter added).
    pub fn new(handle: tokio::runtime::Handle, client: reqwest::Client, headers: ::http::HeaderMap) -> Self {
        Self { handle, client, headers }
    }
}

async fn send(
    client: reqwest::Client,
    headers: ::http::HeaderMap,
    request: Request<Bytes>,
) -> Result<Response<Bytes>, HttpError> {
    let mut request = reqwest::Request::try_from(request)?;
    for (k, v) in &headers {
        request.headers_mut().insert(k.clone(), v.clone());
    }
    let mut resp = client.execute(request).await?;
    let mut out = Response::builder().status(resp.status());
    if let Some(h) = out.headers_mut() {
        *h = resp.headers().clone();
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!("collector response larger than {MAX_RESPONSE} bytes").into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(out.body(Bytes::from(body))?)
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.handle.spawn(send(self.client.clone(), self.headers.clone(), request)).await?
    }
}
