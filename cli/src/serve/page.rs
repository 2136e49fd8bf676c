//! `GET /`: the browser demo's page (`web/`) in server mode. The page's files are compiled into the
//! binary, so `joyrt serve` needs no `web/dist`; the page is told its mode by the `joyrt-mode` meta
//! tag, which is set here, and then posts its edits to [`super::routes::EDITS`] with `stream=true`.
//! No wasm is served: in this mode the model runs on the server. Every answer carries a
//! Content-Security-Policy that allows same-origin resources only (plus the `blob:` URLs the page
//! makes for the images it shows).

use super::routes::App;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("../../../web/index.html");
const MAIN_JS: &str = include_str!("../../../web/main.js");
const STYLE_CSS: &str = include_str!("../../../web/style.css");
const FAVICON_SVG: &str = include_str!("../../../web/favicon.svg");

/// The meta tag as `web/index.html` ships it (the page's own mode: it runs the model itself).
const WASM_MODE: &str = r#"<meta name="joyrt-mode" content="wasm">"#;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/main.js", get(|| async { file("text/javascript; charset=utf-8", MAIN_JS) }))
        .route("/style.css", get(|| async { file("text/css; charset=utf-8", STYLE_CSS) }))
        .route("/favicon.svg", get(|| async { file("image/svg+xml", FAVICON_SVG) }))
}

async fn index(State(app): State<Arc<App>>) -> Response {
    file("text/html; charset=utf-8", &server_mode_html(app.api_key.is_some()))
}

/// `web/index.html` with its mode set to `server`, and whether the API wants a key (the page then
/// shows its key field).
pub fn server_mode_html(needs_key: bool) -> String {
    let key = if needs_key { "required" } else { "none" };
    INDEX_HTML.replacen(
        WASM_MODE,
        &format!(r#"<meta name="joyrt-mode" content="server" data-api-key="{key}">"#),
        1,
    )
}

fn file(content_type: &'static str, body: &str) -> Response {
    let mut r = body.to_string().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_switched_to_server_mode() {
        assert!(INDEX_HTML.contains(WASM_MODE), "web/index.html lost its mode tag");
        let html = server_mode_html(true);
        assert!(html.contains(r#"content="server" data-api-key="required""#), "{html}");
        assert!(!html.contains(WASM_MODE));
        assert!(server_mode_html(false).contains(r#"data-api-key="none""#));
        // What the page loads is served here, and nothing else it needs is missing.
        assert!(INDEX_HTML.contains(r#"src="main.js""#) && INDEX_HTML.contains(r#"href="style.css""#));
        assert!(MAIN_JS.contains("'/v1/images/edits'") && !INDEX_HTML.contains("style=\""));
    }
}
