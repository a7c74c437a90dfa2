//! The embedded web pages: the dashboard at `GET /` (HTML, CSS and JS in
//! this directory) and the example pages of `examples/` at `/examples/...`,
//! compiled into the binary so a fresh `cargo run` serves them with no build
//! step and no CDN.
//!
//! The pages use only the broker's public interfaces (`/ws`, `/ws/t/{topic}`,
//! `/iframe/{topic}`, `/api/topics`), so they double as reference clients. The
//! dashboard's script and style are separate files, which lets its
//! Content-Security-Policy forbid inline code; the examples are single files
//! by design and get a policy that allows their own inline code but nothing
//! from elsewhere (the iframe example also frames its stream from this broker).

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::transport::{full, Body};

/// The dashboard's policy: its own script, style and sockets only; no frames, no forms.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The examples' policy: their inline code, and sockets to any broker (`?broker=`).
const EXAMPLE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self' ws: wss: http: https:; img-src 'self' data:; base-uri 'none'; form-action 'none'";

/// The iframe example's policy: the examples' plus frames from this broker (its stream).
const IFRAME_EXAMPLE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self' ws: wss: http: https:; img-src 'self' data:; frame-src 'self'; base-uri 'none'; \
     form-action 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    csp: &'static str,
    body: &'static str,
}

/// Every file served, by request path.
const ASSETS: &[Asset] = &[
    page("/", DASHBOARD_CSP, include_str!("index.html")),
    page("/index.html", DASHBOARD_CSP, include_str!("index.html")),
    Asset {
        path: "/dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        csp: DASHBOARD_CSP,
        body: include_str!("dashboard.js"),
    },
    Asset {
        path: "/dashboard.css",
        content_type: "text/css; charset=utf-8",
        csp: DASHBOARD_CSP,
        body: include_str!("dashboard.css"),
    },
    page(
        "/examples/ticker.html",
        EXAMPLE_CSP,
        include_str!("../../examples/ticker.html"),
    ),
    page(
        "/examples/scoreboard.html",
        EXAMPLE_CSP,
        include_str!("../../examples/scoreboard.html"),
    ),
    page(
        "/examples/danmaku.html",
        EXAMPLE_CSP,
        include_str!("../../examples/danmaku.html"),
    ),
    page(
        "/examples/iframe.html",
        IFRAME_EXAMPLE_CSP,
        include_str!("../../examples/iframe.html"),
    ),
];

const fn page(path: &'static str, csp: &'static str, body: &'static str) -> Asset {
    Asset {
        path,
        content_type: "text/html; charset=utf-8",
        csp,
        body,
    }
}

/// The dashboard's own files (page, script, style), for the size budget.
pub fn dashboard_files() -> impl Iterator<Item = (&'static str, &'static str)> {
    ASSETS
        .iter()
        .filter(|a| a.csp == DASHBOARD_CSP && a.path != "/")
        .map(|a| (a.path, a.body))
}

/// Whether `path` is one of the embedded files.
pub fn serves(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The embedded file at `path`, with its type, policy and caching headers; 404 if none.
pub fn response(path: &str) -> Response<Body> {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return crate::transport::error_response(StatusCode::NOT_FOUND, "not_found", &format!("no page at {path}"));
    };
    let mut r = Response::new(full(asset.body.as_bytes()));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // The files change with the binary: revalidate rather than keep a stale page after an upgrade.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(asset.csp));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget for the page, uncompressed, without images.
    const BUDGET_BYTES: usize = 40 * 1024;

    #[test]
    fn the_dashboard_fits_the_size_budget() {
        let total: usize = dashboard_files().map(|(_, body)| body.len()).sum();
        assert!(
            total < BUDGET_BYTES,
            "the dashboard is {total} bytes, over {BUDGET_BYTES}"
        );
    }

    #[test]
    fn no_page_loads_anything_from_elsewhere() {
        for a in ASSETS {
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!a.body.contains(scheme), "{} mentions {scheme}", a.path);
            }
        }
    }

    #[test]
    fn every_file_has_its_type_and_policy() {
        let r = response("/dashboard.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(r.headers()[CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        assert_eq!(response("/nope").status(), StatusCode::NOT_FOUND);
        assert!(serves("/") && serves("/index.html") && serves("/examples/ticker.html"));
        // The iframe example may frame its stream from this broker, and nothing else.
        let csp = response("/examples/iframe.html").headers()[CONTENT_SECURITY_POLICY].clone();
        assert!(csp.to_str().unwrap().contains("frame-src 'self';"), "{csp:?}");
    }
}
