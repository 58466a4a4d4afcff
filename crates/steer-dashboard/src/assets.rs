//! The page and its assets, embedded at compile time.
//!
//! `assets/` holds the hand-written page (`index.html`, `app.js`,
//! `style.css`) and, in `assets/vendor/`, the chart library copied from
//! npm by `scripts/build-dashboard.sh` (from `web/package-lock.json`).
//! Both are committed, so building the binary never needs npm.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `(path under /assets/, content type, bytes)`.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/format.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "vendor/uPlot.esm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.esm.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uPlot.min.css"),
    ),
];

const INDEX: &str = include_str!("../assets/index.html");

pub(crate) async fn index() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        INDEX,
    )
        .into_response()
}

pub(crate) async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_links_is_embedded() {
        let app = std::str::from_utf8(ASSETS[0].2).unwrap_or_default();
        for (path, _, body) in ASSETS {
            assert!(!body.is_empty(), "{path}");
        }
        for linked in [
            "/assets/app.js",
            "/assets/style.css",
            "/assets/vendor/uPlot.min.css",
        ] {
            assert!(INDEX.contains(linked), "{linked}");
        }
        assert!(app.contains("./vendor/uPlot.esm.js"));
        assert!(
            !INDEX.contains("http://") && !INDEX.contains("https://"),
            "no CDN"
        );
    }
}
