//! The browser assets `etal serve` serves itself (no CDN: GraphiQL and the back office work
//! offline): GraphiQL, React and Chart.js from web/package-lock.json, embedded by build.rs, and the
//! back office's own CSS and JS from api/admin/assets/.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

const ADMIN_CSS: &[u8] = include_bytes!("../admin/assets/admin.css");
const ADMIN_JS: &[u8] = include_bytes!("../admin/assets/admin.js");

/// `(bytes, content type)` of an asset by its file name.
fn asset(name: &str) -> Option<(&'static [u8], &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    Some(match name {
        "graphiql.min.js" => (embedded::GRAPHIQL_JS?, JS),
        "graphiql.min.css" => (embedded::GRAPHIQL_CSS?, CSS),
        "react.production.min.js" => (embedded::REACT_JS?, JS),
        "react-dom.production.min.js" => (embedded::REACT_DOM_JS?, JS),
        "chart.umd.js" => (embedded::CHART_JS?, JS),
        "graphiql-start.js" => (GRAPHIQL_START.as_bytes(), JS),
        "admin.css" => (ADMIN_CSS, CSS),
        "admin.js" => (ADMIN_JS, JS),
        _ => return None,
    })
}

/// GET /assets/{file} (and /admin/assets/{file}): cached for a day; the names change with
/// the versions only through a new binary, so not for longer.
pub async fn serve_asset(Path(file): Path<String>) -> Response {
    match asset(&file) {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

/// Whether the npm assets were embedded (scripts/tools.sh ran before the build).
pub fn embedded() -> bool {
    embedded::GRAPHIQL_JS.is_some() && embedded::CHART_JS.is_some()
}

const GRAPHIQL_START: &str = r#"(function () {
  var fetcher = GraphiQL.createFetcher({ url: "/graphql" });
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, { fetcher: fetcher, defaultEditorToolbarTabs: "headers" }));
})();
"#;

/// GraphiQL, from the service's own assets.
pub fn graphiql_page() -> Html<String> {
    if !embedded() {
        return Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>etal GraphiQL</title></head>\
             <body><p>GraphiQL's files were not built into this binary: run <code>scripts/tools.sh</code> \
             (<code>make run</code> and <code>make test</code> do), then build again. The API answers at \
             <code>POST /graphql</code>.</p></body></html>"
                .to_string(),
        );
    }
    Html(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>etal GraphiQL</title>
<link rel="stylesheet" href="/assets/graphiql.min.css">
<style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/assets/react.production.min.js"></script>
<script src="/assets/react-dom.production.min.js"></script>
<script src="/assets/graphiql.min.js"></script>
<script src="/assets/graphiql-start.js"></script>
</body>
</html>
"#
        .to_string(),
    )
}
