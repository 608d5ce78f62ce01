//! Embeds the browser assets `npm ci` put in web/node_modules (GraphiQL, React, Chart.js), so
//! that `etal serve` serves them itself and its pages work offline. Without them (a `cargo build`
//! before `scripts/tools.sh` ran), the pages that need them say how to get them.

use std::path::PathBuf;

const ASSETS: [(&str, &str); 5] = [
    ("GRAPHIQL_JS", "graphiql/graphiql.min.js"),
    ("GRAPHIQL_CSS", "graphiql/graphiql.min.css"),
    ("REACT_JS", "react/umd/react.production.min.js"),
    ("REACT_DOM_JS", "react-dom/umd/react-dom.production.min.js"),
    ("CHART_JS", "chart.js/dist/chart.umd.js"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let modules = manifest.join("../web/node_modules");
    println!(
        "cargo:rerun-if-changed={}",
        modules.join(".package-lock.json").display()
    );
    let mut out = String::new();
    let mut all = true;
    for (name, path) in ASSETS {
        let file = modules.join(path);
        if file.is_file() {
            out.push_str(&format!(
                "pub const {name}: Option<&[u8]> = Some(include_bytes!({:?}));\n",
                file.canonicalize()
                    .expect("canonical path")
                    .display()
                    .to_string()
            ));
        } else {
            all = false;
            out.push_str(&format!("pub const {name}: Option<&[u8]> = None;\n"));
        }
    }
    if !all {
        println!("cargo:warning=web/node_modules is missing: run scripts/tools.sh (make test / make run do) for GraphiQL and the back office's charts");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    std::fs::write(out_dir.join("assets.rs"), out).expect("write assets.rs");
    // The back office's pages, actions and templates (api/admin/), by file name.
    let mut admin = String::new();
    for dir in ["pages", "actions", "templates"] {
        let path = manifest.join("admin").join(dir);
        println!("cargo:rerun-if-changed={}", path.display());
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        admin.push_str(&format!(
            "pub const {}: &[(&str, &str)] = &[\n",
            dir.to_uppercase()
        ));
        for f in files {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            println!("cargo:rerun-if-changed={}", f.display());
            admin.push_str(&format!(
                "    ({name:?}, include_str!({:?})),\n",
                f.canonicalize()
                    .expect("canonical path")
                    .display()
                    .to_string()
            ));
        }
        admin.push_str("];\n");
    }
    std::fs::write(out_dir.join("admin_files.rs"), admin).expect("write admin_files.rs");
}
