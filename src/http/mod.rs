//! The HTTP API (docs/protocol.md, "HTTP API"): the only module that knows the routes.
//! It owns what a request may do: the token → access mapping and the Host/Origin policy
//! (`access`), and the offer rate limit with the rest of the request state (`app`).
//!
//! Every answer that is not a success is JSON `{"error": "..."}` with an explicit status:
//! 400 bad body, 401 token, 403 foreign Origin or Host (or a viewer token asking to
//! close a peer), 404, 405, 413 over `limits.body_bytes` (64 KiB), 429 over
//! `limits.offers_per_minute`, 503 full. No request, however malformed, reaches the media
//! pipeline or the motors before it has been checked, and no CORS headers are ever sent.
//!
//! Every response carries [`SECURITY_HEADERS`]: no MIME sniffing, no referrer, no framing,
//! and a Content-Security-Policy that allows the page exactly what it uses.

mod access;
mod app;

pub use app::{Answered, App, OfferError};

use crate::session::Access;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send its request headers (or its TLS handshake).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub type HttpResponse = Response<Full<Bytes>>;

/// The offer shape every supported client sends; other fields (`webrtc_id`, ...) are ignored.
#[derive(Debug, Deserialize)]
struct OfferRequest {
    sdp: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The answer on `/api/offer`: with the peer's id, which the page and API clients use.
#[derive(Debug, Serialize)]
struct AnswerResponse<'a> {
    sdp: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

/// The answer on `/offer`, `/connect` and `/webrtc/offer`: exactly an RTCSessionDescription,
/// since RTCBot (Python) passes it as keyword arguments to `RTCSessionDescription(**answer)`,
/// which raises on any other key. The peer's id and secret are in the `Location` header.
#[derive(Debug, Serialize)]
struct SessionDescription<'a> {
    sdp: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The Content-Security-Policy of every response: the page loads its script, its style
/// sheet and nothing else from its own origin, has an empty `data:` favicon, shows a
/// MediaStream (which no fetch directive governs) and talks to its own origin only; no
/// inline script or style, no plugins, and no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every response carries.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", CONTENT_SECURITY_POLICY),
];

/// Handles one request. `local` is the address the client connected to, `remote` the
/// client's.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    local: SocketAddr,
    remote: SocketAddr,
) -> HttpResponse {
    let mut resp = route(app, req, local, remote).await;
    let headers = resp.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn route(
    app: Arc<App>,
    req: Request<Incoming>,
    local: SocketAddr,
    remote: SocketAddr,
) -> HttpResponse {
    if let Err(refusal) = app.policy().check_host_and_origin(&req) {
        log::warn!("refused {} {}: {}", req.method(), req.uri().path(), refusal);
        return error(StatusCode::FORBIDDEN, &refusal);
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let needs_token = path.starts_with("/api/") || is_offer_path(&path);
    // The page, its assets and /healthz are open: the page is what asks for the token.
    let access = match needs_token {
        false => Some(Access::Full),
        true => app
            .policy()
            .access(req.headers().get(header::AUTHORIZATION)),
    };
    let Some(access) = access else {
        log::info!("refused {method} {path} from {remote}: no valid token");
        return error(
            StatusCode::UNAUTHORIZED,
            "this robot needs an access token: send 'Authorization: Bearer <token>' \
             (http.token in the robot's config)",
        );
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/") | (&Method::GET, "/index.html") => {
            asset(crate::web::INDEX_HTML, "text/html; charset=utf-8")
        }
        (&Method::GET, "/app.js") => asset(crate::web::APP_JS, "text/javascript; charset=utf-8"),
        (&Method::GET, "/style.css") => asset(crate::web::STYLE_CSS, "text/css; charset=utf-8"),
        (&Method::GET, "/healthz") => match app.health() {
            Ok(()) => text(StatusCode::OK, "ok"),
            Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        },
        (&Method::GET, "/api/status") => json(StatusCode::OK, &app.status()),
        (&Method::POST, p) if is_offer_path(p) => {
            offer(&app, p, req, local.ip(), remote.ip(), access).await
        }
        (&Method::DELETE, p) if p.starts_with("/api/peers/") => {
            let id = &p["/api/peers/".len()..];
            let secret = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("secret=")));
            delete_peer(&app, id, secret, access).await
        }
        (_, p) if known_path(p) => {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} is not allowed on {p}"),
            );
            let allow = if is_offer_path(p) {
                "POST"
            } else if p.starts_with("/api/peers/") {
                "DELETE"
            } else {
                "GET"
            };
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
        (_, p) => error(StatusCode::NOT_FOUND, &format!("nothing at {p}")),
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until the client closes it.
pub async fn serve_connection<S>(app: Arc<App>, stream: S, local: SocketAddr, remote: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(handle(app, req, local, remote).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A client that trickles its headers cannot hold a connection forever.
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        log::debug!(target: "roverd::server", "connection from {remote}: {e}");
    }
}

/// `DELETE /api/peers/<id>`: the full token closes any peer; the peer's own secret (from
/// its answer's `Location`) closes that one peer, whatever the token.
async fn delete_peer(app: &App, id: &str, secret: Option<&str>, access: Access) -> HttpResponse {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            &format!("no peer with id {id:?} is connected"),
        )
    };
    match (secret, access) {
        (Some(secret), _) => match app.peers.secret_matches(id, secret) {
            None => return not_found(),
            Some(false) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "this is not the secret of that connection; use the Location of its \
                     answer, or the robot's full token (http.token)",
                )
            }
            Some(true) => {}
        },
        (None, Access::Viewer) => {
            return error(
                StatusCode::FORBIDDEN,
                "this viewer's token can watch but not close connections; use the robot's full \
                 token (http.token)",
            )
        }
        (None, Access::Full) => {}
    }
    // A peer whose client closed its connection a moment before this DELETE is already
    // gone: closed all the same.
    if app.peers.close(id).await || app.peers.recently_gone(id) {
        empty(StatusCode::NO_CONTENT)
    } else {
        not_found()
    }
}

fn is_offer_path(path: &str) -> bool {
    matches!(path, "/api/offer" | "/offer" | "/connect" | "/webrtc/offer")
}

fn known_path(path: &str) -> bool {
    is_offer_path(path)
        || path.starts_with("/api/peers/")
        || matches!(
            path,
            "/" | "/index.html" | "/app.js" | "/style.css" | "/healthz" | "/api/status"
        )
}

async fn offer(
    app: &Arc<App>,
    path: &str,
    req: Request<Incoming>,
    local_ip: IpAddr,
    client: IpAddr,
    access: Access,
) -> HttpResponse {
    let max_body = app.config.limits.body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return too_large(max_body);
    }
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(max_body),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("could not read the request body: {e}"),
            )
        }
    };
    let sdp = match parse_offer_body(&body) {
        Ok(sdp) => sdp,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    // The work runs in its own task, and its result comes back over a channel: when the
    // client has gone (hyper drops this future), the new peer is closed at once instead of
    // holding a place until limits.connect_timeout_s.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let worker = Arc::clone(app);
    tokio::spawn(async move {
        let result = worker.offer(sdp, local_ip, client, access).await;
        if let Err(Ok(answered)) = tx.send(result) {
            log::info!(
                target: "roverd::server",
                "peer {}: the client left before its answer was sent; closing it",
                answered.id
            );
            worker.peers.close(&answered.id).await;
        }
    });
    let Ok(result) = rx.await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "answering the offer failed inside roverd; see its log",
        );
    };
    match result {
        Ok(answered) => answer(path, &answered),
        Err(OfferError::Full(max)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "the robot already has {max} viewers (http.max_peers); try again when one leaves"
            ),
        ),
        Err(OfferError::TooMany { retry_after }) => {
            let secs = retry_after.as_secs() + 1;
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many connection attempts from this address (limits.offers_per_minute = {}); \
                     try again in {secs} s",
                    app.config.limits.offers_per_minute
                ),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Err(OfferError::Rtc(crate::rtc::RtcError::BadOffer(why))) => error(
            StatusCode::BAD_REQUEST,
            &format!("the offer is not a valid SDP offer: {why}"),
        ),
        Err(OfferError::Rtc(e)) => {
            log::error!("{e}");
            error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

/// A 200 answer in the shape the client of `path` expects, with `Location` naming the
/// peer and carrying its secret, so that the client may close it whatever its token.
fn answer(path: &str, answered: &Answered) -> HttpResponse {
    let mut resp = if path == "/api/offer" {
        json(
            StatusCode::OK,
            &AnswerResponse {
                sdp: &answered.answer,
                kind: "answer",
                id: &answered.id,
            },
        )
    } else {
        json(
            StatusCode::OK,
            &SessionDescription {
                sdp: &answered.answer,
                kind: "answer",
            },
        )
    };
    let location = format!("/api/peers/{}?secret={}", answered.id, answered.secret);
    if let Ok(value) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, value);
    }
    resp
}

/// The checks on an offer's body before any WebRTC work: JSON, the `{sdp, type}` shape and
/// `type` = `"offer"`. Returns the SDP, or the reason for a 400. Pure, so it is fuzzed
/// (`fuzz/`, `roverd::fuzzing::offer`); the SDP itself is checked by [`crate::rtc::parse_offer`].
pub fn parse_offer_body(body: &[u8]) -> Result<String, String> {
    let request: OfferRequest = match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e) => {
            return Err(format!(
                "the body is not JSON ({e}); send {{\"sdp\": \"...\", \"type\": \"offer\"}}"
            ))
        }
        Ok(value) => serde_json::from_value(value).map_err(|e| {
            format!(
                "the body is not an offer ({e}); send {{\"sdp\": \"...\", \"type\": \"offer\"}}"
            )
        })?,
    };
    if request.kind != "offer" {
        return Err(format!(
            "\"type\" is {:?}; only \"offer\" is accepted here",
            request.kind
        ));
    }
    Ok(request.sdp)
}

fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    let mut resp = asset(body, "text/plain; charset=utf-8");
    *resp.status_mut() = status;
    resp
}

fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": message }))
}

fn too_large(max_body: usize) -> HttpResponse {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "the request body is larger than {} KiB (limits.body_bytes)",
            max_body / 1024
        ),
    )
}
